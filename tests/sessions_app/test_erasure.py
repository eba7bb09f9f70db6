"""Erasure removes a person completely and audits it without their data; export shows all held."""

import io
import json
import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Contact, ErasureRecord, Message, Session, StatusChange
from tests.factories import UserFactory
from tests.twilio_helpers import GATHER_URL, OUR_NUMBER, new_sid, post_signed, send_sms, send_whatsapp

pytestmark = pytest.mark.django_db

ANA = "+15551234567"
ANA_NAME = "Ana Popescu"
ANA_WORDS = ["my card number ends 4242", "still there?", "call me back please", "hola desde whatsapp"]
BOB = "+15557654321"


@pytest.fixture
def people(client, django_capture_on_commit_callbacks):
    """Ana writes by SMS and WhatsApp and calls; Bob texts once. Replies are produced."""
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, ANA, ANA_WORDS[0])
        send_sms(client, ANA, ANA_WORDS[1])
        send_whatsapp(client, ANA, ANA_WORDS[3], ProfileName=ANA_NAME, WaId=ANA[1:])
        call = {"CallSid": new_sid("CA"), "From": ANA, "To": OUR_NUMBER, "SpeechResult": ANA_WORDS[2]}
        post_signed(client, f"{GATHER_URL}?turn=1", call)
        send_sms(client, BOB, "Bob's question")
    sms_session = Session.objects.get(contact__phone=ANA, channel_kind="sms")
    transition_session(sms_session, "closed", actor="user:staff")
    sms_session.refresh_from_db()
    sms_session.metadata["crmNote"] = "VIP"
    sms_session.save(update_fields=["metadata"])
    return Contact.objects.get(phone=ANA), Contact.objects.get(phone=BOB)


def every_row_as_text() -> str:
    """Every row of every table, as the database holds it."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def mentions_of_ana(text: str) -> list[str]:
    needles = [ANA, ANA[1:], ANA[2:], ANA_NAME, *ANA_WORDS]
    return [needle for needle in needles if needle in text]


def test_erase_contact_leaves_no_row_mentioning_the_person_and_records_the_audit(people, staff_client):
    ana, bob = people
    # Staff edited Ana's contact in admin: that history names her too.
    staff_client.post(
        f"/admin/sessions_app/contact/{ana.pk}/change/", {"phone": ANA, "display_name": ANA_NAME}
    )
    assert mentions_of_ana(every_row_as_text())  # the scan does see her before
    ana_messages = Message.objects.filter(session__contact=ana).count()
    ana_changes = StatusChange.objects.filter(session__contact=ana).count()
    assert ana_messages == 8 and ana_changes == 1

    out = io.StringIO()
    call_command("erase_contact", ANA, "--reference", "ticket-1234", stdout=out)

    assert mentions_of_ana(every_row_as_text()) == []
    assert not Contact.objects.filter(pk=ana.pk).exists()
    record = ErasureRecord.objects.get()
    assert record.actor.startswith("cli:")
    assert record.reference == "ticket-1234"
    assert record.deleted == {
        "admin.LogEntry": 1,
        "sessions_app.Contact": 1,
        "sessions_app.Message": ana_messages,
        "sessions_app.Session": 3,
        "sessions_app.StatusChange": ana_changes,
    }
    assert f"audit record {record.pk}" in out.getvalue()
    # Bob is untouched.
    assert Session.objects.get().contact == bob
    assert Message.objects.get(role="contact").content == "Bob's question"
    assert Session.objects.get().metadata["fromNumber"] == BOB


def test_erase_contact_takes_a_contact_id_and_refuses_what_it_cannot_find(people):
    ana, _ = people
    call_command("erase_contact", str(ana.pk), stdout=io.StringIO())
    assert not Contact.objects.filter(pk=ana.pk).exists()
    with pytest.raises(CommandError, match="no contact with id"):
        call_command("erase_contact", str(ana.pk))
    with pytest.raises(CommandError, match="no contact with that phone number") as caught:
        call_command("erase_contact", ANA)
    assert ANA not in str(caught.value)
    with pytest.raises(CommandError, match=r"E\.164"):
        call_command("erase_contact", "Ana")


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="dpo", is_staff=True, is_superuser=True))
    return client


def test_the_admin_action_confirms_then_erases_in_one_step(people, staff_client):
    ana, bob = people
    changelist = "/admin/sessions_app/contact/"
    form = {"action": "erase_selected_contacts", "_selected_action": [str(ana.pk)]}
    confirm = staff_client.post(changelist, form)
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "3 sessions and 8 messages" in page
    assert Contact.objects.filter(pk=ana.pk).exists()  # nothing happens before confirming

    done = staff_client.post(changelist, {**form, "confirm": "yes"}, follow=True)
    assert done.status_code == 200
    assert not Contact.objects.filter(pk=ana.pk).exists()
    assert list(Contact.objects.all()) == [bob]
    record = ErasureRecord.objects.get()
    assert record.actor == "staff:dpo"
    assert record.deleted["sessions_app.Session"] == 3
    assert mentions_of_ana(every_row_as_text()) == []


def test_export_contact_holds_what_the_orm_and_admin_show(people, staff_client, tmp_path):
    ana, _ = people
    out = io.StringIO()
    call_command("export_contact", ANA, stdout=out)
    exported = json.loads(out.getvalue())

    (contact,) = exported["contacts"]
    assert contact["id"] == ana.pk
    assert contact["phone"] == ANA
    assert contact["whatsapp_profile_name"] == ANA_NAME
    sessions = {s["id"]: s for s in contact["sessions"]}
    orm_sessions = Session.objects.filter(contact=ana)
    assert set(sessions) == {str(s.pk) for s in orm_sessions}
    for session in orm_sessions:
        row = sessions[str(session.pk)]
        assert row["metadata"] == session.metadata  # decrypted
        assert row["title"] == session.title
        assert row["status"] == session.status
        assert [(m["id"], m["role"], m["content"]) for m in row["messages"]] == list(
            session.messages.values_list("id", "role", "content")
        )
        assert [c["to_status"] for c in row["status_changes"]] == list(
            session.status_changes.values_list("to_status", flat=True)
        )
        # The admin page shows the same decrypted metadata.
        page = staff_client.get(f"/admin/sessions_app/session/{session.pk}/change/").content.decode()
        assert "fromNumber" in page and ANA in page
    assert sessions[str(orm_sessions.get(channel_kind="sms").pk)]["metadata"]["crmNote"] == "VIP"
    assert {word for s in sessions.values() for m in s["messages"] for word in [m["content"]]} >= set(
        ANA_WORDS
    )

    target = tmp_path / "ana.json"
    call_command("export_contact", str(ana.pk), "--output", str(target), stderr=io.StringIO())
    assert json.loads(target.read_text())["contacts"][0]["sessions"] == contact["sessions"]
    assert os.stat(target).st_mode & 0o077 == 0


def test_export_costs_the_same_queries_for_one_or_many_sessions(people, django_assert_max_num_queries):
    from sessions_app.privacy.erasure import export_contacts

    ana, bob = people
    # Sessions, then one query per kind of child: messages, status changes, the outbox's events
    # (their payloads quote the person's messages, so they are exported and erased too).
    with django_assert_max_num_queries(4):
        export_contacts([ana])
    with django_assert_max_num_queries(4):
        export_contacts([bob])


@pytest.fixture
def contact_deletes_fail():
    """A database trigger that refuses to delete contacts: a failure after sessions are gone."""
    table = Contact._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_delete() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'refused by test trigger'; END; $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_contact_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_delete()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER refuse_contact_delete ON {table}")
        cursor.execute("DROP FUNCTION refuse_delete()")


def test_an_erasure_that_fails_halfway_removes_nothing(people, contact_deletes_fail):
    ana, _ = people
    before = every_row_as_text()
    with pytest.raises(Exception, match="refused by test trigger"):
        call_command("erase_contact", ANA, stdout=io.StringIO())
    assert every_row_as_text() == before
    assert Session.objects.filter(contact=ana).count() == 3
    assert not ErasureRecord.objects.exists()


@pytest.mark.usefixtures("people")
def test_export_round_trips_what_the_api_shows(staff_client):
    out = io.StringIO()
    call_command("export_contact", ANA, stdout=out)
    exported = {s["id"]: s for s in json.loads(out.getvalue())["contacts"][0]["sessions"]}
    for session_id, row in exported.items():
        shown = staff_client.get(f"/api/v1/sessions/{session_id}/").json()
        assert (shown["title"], shown["status"], shown["metadata"]) == (
            row["title"],
            row["status"],
            row["metadata"],
        )
        assert shown["message_count"] == len(row["messages"])
        listed = staff_client.get(f"/api/v1/sessions/{session_id}/messages/").json()
        api_messages = [(m["id"], m["content"]) for m in listed["results"]]
        assert api_messages == [(m["id"], m["content"]) for m in row["messages"]]
