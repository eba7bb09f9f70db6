"""Session metadata is encrypted at rest, transparently to the ORM; keys rotate; bad keys are loud."""

import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from sessions_app.crypto import DecryptionError
from sessions_app.fields import EncryptedValueError
from sessions_app.models import Session
from tests.factories import SessionFactory
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
SECRET_NOTE = "allergic to penicillin"


def raw_metadata() -> dict[str, str]:
    """Session id (as the database returns it) → the column's text, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, metadata FROM {Session._meta.db_table}")  # noqa: S608
        return {str(pk).replace("-", ""): value for pk, value in cursor.fetchall()}


def raw_for(session: Session) -> str:
    return raw_metadata()[session.pk.hex]


def test_the_column_holds_only_ciphertext_and_the_orm_sees_the_dict(client):
    assert send_sms(client, "+15551234567", "Hello").status_code == 200
    session = Session.objects.get()
    session.metadata["note"] = SECRET_NOTE
    session.save(update_fields=["metadata"])

    raw = raw_for(session)
    assert raw.startswith("gAAAAA")  # a Fernet token
    for plaintext in ["+15551234567", "5551234567", "fromNumber", "firstMessageAt", "penicillin", "{"]:
        assert plaintext not in raw
    fresh = Session.objects.get()
    assert fresh.metadata["fromNumber"] == "+15551234567"
    assert fresh.metadata["note"] == SECRET_NOTE
    assert Session.objects.values_list("metadata", flat=True).get()["note"] == SECRET_NOTE


def test_the_same_metadata_encrypts_differently_each_time():
    one = SessionFactory(metadata={"a": 1})
    two = SessionFactory(metadata={"a": 1})
    assert raw_for(one) != raw_for(two)


def test_queries_inside_metadata_are_refused_rather_than_matching_nothing():
    with pytest.raises(FieldError):
        list(Session.objects.filter(metadata__fromNumber="+15551234567"))
    with pytest.raises(FieldError):
        list(Session.objects.filter(metadata={"a": 1}))
    assert Session.objects.filter(metadata__isnull=True).count() == 0


def test_an_old_key_still_decrypts_and_the_newest_encrypts():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        old = SessionFactory(metadata={"era": "old"})
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert Session.objects.get(pk=old.pk).metadata == {"era": "old"}
        new = SessionFactory(metadata={"era": "new"})
    assert json.loads(Fernet(NEW_KEY).decrypt(raw_for(new).encode())) == {"era": "new"}
    assert json.loads(Fernet(OLD_KEY).decrypt(raw_for(old).encode())) == {"era": "old"}


def test_reencrypt_moves_every_row_to_the_newest_key_in_resumable_batches():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        sessions = [SessionFactory(metadata={"n": n}) for n in range(7)]
    out = io.StringIO()
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        current = SessionFactory(metadata={"n": "current"})  # already on the new key: left alone
        before = raw_for(current)
        call_command("reencrypt_metadata", "--batch-size", "3", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # three batches (3 + 3 + 2 rows) and the summary
    assert "resume with --after" in lines[0]
    assert lines[-1] == "Done: 7 re-encrypted, 1 already on the newest key."
    assert raw_for(current) == before
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):  # the old key can now be dropped
        assert {s.pk: s.metadata for s in Session.objects.all()} == {
            **{s.pk: {"n": n} for n, s in enumerate(sessions)},
            current.pk: {"n": "current"},
        }
        again = io.StringIO()
        call_command("reencrypt_metadata", stdout=again)
        assert again.getvalue().splitlines()[-1] == "Done: 0 re-encrypted, 8 already on the newest key."


def test_reencrypt_resumes_after_a_given_id():
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD_KEY]):
        sessions = sorted((SessionFactory(metadata={"n": n}) for n in range(4)), key=lambda s: s.pk)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        call_command("reencrypt_metadata", "--after", str(sessions[1].pk), stdout=io.StringIO())
    on_new = []
    for session in sessions:
        try:
            Fernet(NEW_KEY).decrypt(raw_for(session).encode())
            on_new.append(True)
        except Exception:
            on_new.append(False)
    assert on_new == [False, False, True, True]


def test_a_wrong_key_is_an_error_that_names_the_session():
    session = SessionFactory(metadata={"a": 1})
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):
        loaded = Session.objects.get(pk=session.pk)  # loading is fine; reading the value is not
        with pytest.raises(EncryptedValueError, match=f"Session {session.pk}: metadata cannot be decrypted"):
            loaded.metadata  # noqa: B018
        with pytest.raises(DecryptionError):
            dict(Session.objects.values_list("metadata", flat=True).get())
        with pytest.raises(CommandError, match=f"Session {session.pk}"):
            call_command("reencrypt_metadata", stdout=io.StringIO())


def test_a_tampered_value_is_an_error_that_names_the_session():
    session = SessionFactory(metadata={"role": "user"})
    token = raw_for(session)
    tampered = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]
    Session.objects.filter(pk=session.pk).update(title="x")  # the row exists
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Session._meta.db_table} SET metadata = %s WHERE title = %s",  # noqa: S608
            [tampered, "x"],
        )
    with pytest.raises(EncryptedValueError, match=f"Session {session.pk}.*altered"):
        Session.objects.get(pk=session.pk).metadata  # noqa: B018


def test_an_undecryptable_session_still_lists_and_changes_status():
    from sessions_app.lifecycle import transition_session

    session = SessionFactory(metadata={"a": 1})
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):
        assert Session.objects.count() == 1
        transition_session(Session.objects.get(pk=session.pk), "closed", actor="test")
    assert Session.objects.get(pk=session.pk).metadata == {"a": 1}  # the ciphertext was not touched


def test_staff_edit_metadata_in_admin_and_it_is_stored_encrypted(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    session = SessionFactory(metadata={"fromNumber": "+15551234567"})
    path = f"/admin/sessions_app/session/{session.pk}/change/"
    page = client.get(path).content.decode()
    assert "fromNumber" in page and "+15551234567" in page  # shown decrypted
    management = {
        f"{prefix}-{name}": "0"
        for prefix in ("messages", "status_changes")
        for name in ("TOTAL_FORMS", "INITIAL_FORMS")
    }
    response = client.post(
        path, {"title": "Edited", "metadata": '{"cartId": "c-42", "currentView": "checkout"}', **management}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Session.objects.get(pk=session.pk).metadata == {"cartId": "c-42", "currentView": "checkout"}
    raw = raw_for(session)
    assert "cartId" not in raw and "checkout" not in raw
