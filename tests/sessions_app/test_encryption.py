"""Session metadata is encrypted at rest, transparently to the ORM; keys rotate; bad keys are loud."""

import base64
import io
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from sessions_app.models import Session
from sessions_app.privacy.crypto import DecryptionError, decrypt_json, encrypt_json, is_current
from sessions_app.privacy.fields import EncryptedValueError
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


def opens_with(key: str, token: str) -> Any:
    """The value inside `token` when `key` is the only one configured; None when it does not open."""
    with override_settings(FIELD_ENCRYPTION_KEYS=[key]):
        try:
            return decrypt_json(token)
        except DecryptionError:
            return None


def test_the_column_holds_only_ciphertext_and_the_orm_sees_the_dict(client):
    assert send_sms(client, "+15551234567", "Hello").status_code == 200
    session = Session.objects.get()
    session.metadata["note"] = SECRET_NOTE
    session.save(update_fields=["metadata"])

    raw = raw_for(session)
    assert raw.startswith("v2:")  # AES-256-GCM (sessions_app/privacy/crypto.py)
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
    assert opens_with(NEW_KEY, raw_for(new)) == {"era": "new"} and opens_with(OLD_KEY, raw_for(new)) is None
    assert opens_with(OLD_KEY, raw_for(old)) == {"era": "old"} and opens_with(NEW_KEY, raw_for(old)) is None


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
    on_new = [opens_with(NEW_KEY, raw_for(session)) is not None for session in sessions]
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
    from sessions_app.lifecycle.transitions import transition_session

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


def test_values_written_as_fernet_tokens_still_read_and_reencrypt_moves_them_to_the_current_form():
    """Before v2, metadata was stored as Fernet tokens under the same configured keys."""
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):
        session = SessionFactory(metadata={})
        fernet_token = Fernet(NEW_KEY).encrypt(json.dumps({"era": "fernet"}).encode()).decode("ascii")
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Session._meta.db_table} SET metadata = %s",  # noqa: S608
                [fernet_token],
            )
        assert Session.objects.get(pk=session.pk).metadata == {"era": "fernet"}
        assert not is_current(fernet_token)  # under the newest key, but in the old form
        out = io.StringIO()
        call_command("reencrypt_metadata", stdout=out)
        assert out.getvalue().splitlines()[-1] == "Done: 1 re-encrypted, 0 already on the newest key."
        assert raw_for(session).startswith("v2:") and is_current(raw_for(session))
        assert Session.objects.get(pk=session.pk).metadata == {"era": "fernet"}


@pytest.mark.parametrize(
    "token",
    ["v2:", "v2:not base64!", "v2:" + "A" * 8, "v2:" + "A" * 64, "gAAAAAnot-a-token", "plain text"],
)
def test_a_malformed_value_is_a_decryption_error_not_a_crash(token):
    with pytest.raises(DecryptionError, match="no key in FIELD_ENCRYPTION_KEYS opens this value"):
        decrypt_json(token)
    assert not is_current(token)


def test_the_current_form_is_authenticated_under_a_derived_key():
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW_KEY]):
        token = encrypt_json({"a": 1})
        raw = bytearray(base64.urlsafe_b64decode(token[3:]))
        assert len(raw) == 12 + len(b'{"a":1}') + 16  # nonce, ciphertext, tag
        for position in (0, 12, len(raw) - 1):  # the nonce, the ciphertext, the tag
            altered = bytearray(raw)
            altered[position] ^= 1
            with pytest.raises(DecryptionError):
                decrypt_json("v2:" + base64.urlsafe_b64encode(bytes(altered)).decode())
        # Not the configured key's own bytes: that key alone does not open it.
        with pytest.raises(InvalidTag):
            AESGCM(base64.urlsafe_b64decode(NEW_KEY)).decrypt(bytes(raw[:12]), bytes(raw[12:]), None)
