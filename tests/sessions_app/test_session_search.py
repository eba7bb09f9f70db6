"""The shared session search (`sessions_app/search/query.py`): what matches, who sees it, in what
order, and (PostgreSQL) that the search document the triggers keep is current after every write."""

from __future__ import annotations

import pytest
from django.db import connection

from sessions_app.models import Contact, Message, Session
from sessions_app.search.query import search_sessions, tsquery
from tests.factories import ContactFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


def found(term: str, queryset=None) -> set:
    return set(
        search_sessions(queryset if queryset is not None else Session.objects.all(), term).values_list(
            "pk", flat=True
        )
    )


@pytest.fixture
def target():
    contact = ContactFactory(
        phone="+15550004242",
        display_name="Grace Hopper",
        whatsapp_profile_name="Amazing Grace",
        external_user_id="cust-991",
    )
    session = SessionFactory(contact=contact, title="A billing question", description="Escalated to finance")
    MessageFactory(session=session, content="Where is my PARCEL? Order #7781")
    MessageFactory(session=session, content="")  # media only: no words
    other = SessionFactory(title="Something else", contact=ContactFactory(display_name="Alan Turing"))
    MessageFactory(session=other, content="hello there")
    return session


@pytest.mark.parametrize(
    "term",
    [
        "billing",  # title
        "BILLING QUESTION",  # title, any case, several words
        "finance",  # description
        "grace",  # display name
        "hopper",
        "amazing",  # WhatsApp profile name
        "cust-991",  # external user id
        "parcel",  # message text
        "7781",  # a number in message text
        "+1 (555) 000-4242",  # the contact's phone as people write it
        "+15550004242",
        "5550004242",  # without the country code
        "0004242",  # the end of the number
    ],
)
def test_every_field_is_searched(target, term):
    assert found(term) == {target.pk}


def test_nothing_found_for_text_that_is_not_there(target):
    assert found("zebra") == set()
    assert found("billing zebra") == set()  # every word must be there


def test_words_match_by_prefix_and_punctuation_separates_words(target):
    assert found("bill") == {target.pk}
    assert found("grace hop") == {target.pk}
    assert found("gra hopper") == set()  # only the last word may be a start
    assert found("order 7781") == {target.pk}
    assert found("illing") == set()  # the middle of a word is not a word
    assert found("?!") == set()  # no word at all
    assert found("g") == set()  # one character: whole words only ("grace" does not count)...
    assert found("a") == {target.pk}  # ...but "A billing question" does


def test_tsquery_text():
    assert tsquery("Refund parcel") == "('refund' & 'parcel':*)"
    assert tsquery("b2 a") == "('b2' & 'a')"
    assert tsquery("user_42's") == "('user' & '42' & 's')"
    assert tsquery("+1 (555) 000-4242") == "('1' & '555' & '000' & '4242':*) | ('15550004242':*)"
    assert tsquery("+15550004242") == "('15550004242':*)"
    assert tsquery("Łódź") == "('łódź':*)"
    assert tsquery("?!") == ""


def test_search_narrows_the_given_queryset(target):
    assert found("parcel", Session.objects.exclude(pk=target.pk)) == set()
    assert found("parcel", Session.objects.filter(pk=target.pk)) == {target.pk}


def _document(session: Session) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_document::text FROM sessions_app_session WHERE id = %s", [session.pk])
        return cursor.fetchone()[0]


def test_the_document_holds_the_words_of_every_field(target):
    document = _document(target)
    for lexeme in ["'billing'", "'finance'", "'grace'", "'hopper'", "'amazing'", "'cust'", "'991'"]:
        assert lexeme in document
    for lexeme in ["'parcel'", "'order'", "'7781'", "'15550004242'", "'0004242'", "'42'"]:
        assert lexeme in document


def test_the_document_follows_every_write(target):
    MessageFactory(session=target, content="Refund please")
    assert found("refund") == {target.pk}

    Session.objects.filter(pk=target.pk).update(title="Renamed", description="")
    assert found("billing") == set() and found("finance") == set()
    assert found("renamed") == {target.pk}
    assert found("parcel") == {target.pk}  # message words survive a new title

    Contact.objects.filter(pk=target.contact_id).update(display_name="Ada Lovelace", phone="+447700900123")
    assert found("hopper") == set() and found("0004242") == set()
    assert found("lovelace") == {target.pk} and found("7700900") == {target.pk}
    assert found("amazing") == {target.pk}  # the contact's other name is kept

    ada = Contact.objects.get(pk=target.contact_id)
    Session.objects.filter(pk=target.pk).update(contact=ContactFactory(display_name="Someone Else"))
    assert found("lovelace") == set() and found("someone") == {target.pk}
    Session.objects.filter(pk=target.pk).update(contact=ada)

    message = Message.objects.get(session=target, content__startswith="Where")
    Message.objects.filter(pk=message.pk).update(content="Nothing to see")
    assert found("parcel") == set() and found("nothing") == {target.pk}

    Message.objects.filter(session=target, content="Refund please").delete()
    assert found("refund") == set()
    assert found("nothing") == {target.pk}


def test_a_message_of_known_words_does_not_rewrite_the_session(target):
    MessageFactory(session=target, content="parcel")
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM sessions_app_session WHERE id = %s", [target.pk])
        before = cursor.fetchone()[0]
        MessageFactory(session=target, content="Parcel? ORDER!")
        cursor.execute("SELECT xmin::text FROM sessions_app_session WHERE id = %s", [target.pk])
        assert cursor.fetchone()[0] == before


def test_ingest_keeps_the_document_current():
    from sessions_app.ingest.rule import InboundMessage, record_phone_message

    result = record_phone_message(
        kind="sms",
        to="+15005550006",
        from_phone="+15557654321",
        inbound=InboundMessage(content="Broken screen"),
    )
    assert found("broken") == {result.session.pk}
    assert found("7654321") == {result.session.pk}
    joined = record_phone_message(
        kind="sms",
        to="+15005550006",
        from_phone="+15557654321",
        inbound=InboundMessage(content="Cracked glass"),
    )
    assert joined.session.pk == result.session.pk
    assert found("cracked glass") == {result.session.pk}
    assert found("broken") == {result.session.pk}


def test_a_deleted_session_is_not_found(target):
    Session.objects.filter(pk=target.pk).delete()
    assert found("parcel") == set()


def test_the_backfill_builds_the_documents_the_triggers_keep(target):
    SessionFactory(contact=None, title="No contact, no messages")
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, search_document::text FROM sessions_app_session ORDER BY id")
        kept = cursor.fetchall()
        cursor.execute("UPDATE sessions_app_session SET search_document = ''")
        cursor.execute("SELECT session_search_backfill()")
        cursor.execute("SELECT id, search_document::text FROM sessions_app_session ORDER BY id")
        assert cursor.fetchall() == kept


@pytest.mark.parametrize("hits_needed", [1, 10_000])  # 1: always "common" (walk); 10,000: never (index)
def test_several_words_find_the_same_sessions_by_either_plan(target, monkeypatch, hits_needed):
    monkeypatch.setattr("sessions_app.search.query.PROBE_HITS", hits_needed)
    assert found("billing question") == {target.pk}
    assert found("grace hop") == {target.pk}
    assert found("where parcel") == {target.pk}
    assert found("billing zebra") == set()
    mine = Session.objects.filter(pk=target.pk)
    assert found("billing question", Session.objects.exclude(pk=target.pk)) == set()
    assert found("billing question", mine) == {target.pk}


def _session_rows_updated() -> int:
    # This transaction's own count: the test runs inside one, so nothing else adds to it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = %s",
            [Session._meta.db_table],
        )
        row = cursor.fetchone()
    return row[0] if row else 0


def test_a_joining_message_with_new_words_writes_its_session_once():
    from sessions_app.ingest.rule import InboundMessage, record_phone_message

    def text(content: str):
        return record_phone_message(
            kind="sms", to="+15005550006", from_phone="+15557654321", inbound=InboundMessage(content=content)
        )

    first = text("Broken screen")
    updated_before = _session_rows_updated()
    joined = text("Cracked glass")
    # The ingest function's bump carries the new words: the message trigger has nothing to add.
    assert _session_rows_updated() - updated_before == 1
    assert joined.session.pk == first.session.pk
    assert found("cracked") == {first.session.pk}


def _count_function_calls() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL track_functions = 'pl'")  # for this transaction's statistics view


def _calls(function: str) -> int:
    """How often `function` ran in this transaction (after `_count_function_calls`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = %s", [function]
        )
        return int(cursor.fetchone()[0])


def _message_trigger_calls() -> int:
    return _calls("session_search_on_message_insert")


def _session_trigger_calls() -> int:
    return _calls("session_search_on_session")


def test_ingest_skips_the_message_trigger_and_every_other_insert_still_fires_it():
    """Ingest writes the document itself (migration 0013); the flag it raises for its own insert
    is lowered again, so a message stored later in the same transaction still reaches it."""
    from sessions_app.ingest.rule import InboundMessage, record_phone_message

    _count_function_calls()
    opened = record_phone_message(
        kind="sms", to="+15005550006", from_phone="+15557654321", inbound=InboundMessage(content="Broken")
    )
    record_phone_message(
        kind="sms", to="+15005550006", from_phone="+15557654321", inbound=InboundMessage(content="Cracked")
    )
    assert _message_trigger_calls() == 0
    MessageFactory(session=opened.session, content="Replacement ordered")
    assert _message_trigger_calls() == 1
    assert found("replacement") == found("broken") == found("cracked") == {opened.session.pk}


FIRST_PHONE_DEFINITION = r"""
    SELECT array_to_tsvector(array(
        SELECT substr(digits, i)
        FROM (SELECT regexp_replace(coalesce(phone, ''), '\D', '', 'g') AS digits) p,
             generate_series(1, length(digits) - 1) i
    ))
"""


@pytest.mark.parametrize(
    "phone", ["+15550004242", "+44 20 7946-0958", "whatsapp:+4915112345678", "7", "", None]
)
def test_the_phone_suffixes_are_those_of_the_first_definition(phone):
    """`session_search_phone` is a PL/pgSQL loop for speed; its first definition, a query over
    `generate_series`, is the oracle."""
    body = FIRST_PHONE_DEFINITION.replace("phone", "%(phone)s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({body})::text, session_search_phone(%(phone)s)::text", {"phone": phone})
        expected, actual = cursor.fetchone()
    assert actual == expected
    if phone and len(phone) > 2:
        assert "'" + phone[-2:] + "'" in actual  # the last two digits find it


def _session_document(session_id) -> tuple[str, str]:
    """(the stored document, the one session_search_fields computes from the rows now)"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_document::text, "
            "session_search_fields(title, description, contact_id, id)::text "
            "FROM sessions_app_session WHERE id = %s",
            [session_id],
        )
        return cursor.fetchone()


def test_a_session_opened_for_a_new_contact_gets_the_document_the_trigger_would_compute():
    """Ingest computes it from the rows it holds (migration 0013); a contact seen before, maybe
    edited since, gets it from the trigger, which reads the contact."""
    from sessions_app.ingest.rule import InboundMessage, record_phone_message

    _count_function_calls()

    def whatsapp(content: str):
        return record_phone_message(
            kind="whatsapp",
            to="+15005550006",
            from_phone="+447700900123",
            inbound=InboundMessage(content=content),
            whatsapp_id="447700900123",
            profile_name="Zoë O'Brien-Smith",
        )

    first = whatsapp("My order #4242 hasn't arrived; e-mail ana@example.com")
    assert first.created_session and _session_trigger_calls() == 0
    stored, computed = _session_document(first.session.pk)
    assert stored == computed and "'4242'" in stored and "'obrien'" not in stored and "'brien'" in stored
    Contact.objects.filter(pk=first.session.contact_id).update(display_name="Zoe Concierge")
    Session.objects.filter(pk=first.session.pk).update(status="closed")
    second = whatsapp("Hello again")
    assert second.created_session and _session_trigger_calls() == 1
    stored, computed = _session_document(second.session.pk)
    assert stored == computed and "'concierge'" in stored
