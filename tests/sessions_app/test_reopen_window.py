"""The reopen window: a message soon after staff closed or resolved a session reopens it.

Through the SMS webhook on a controlled clock, as the reuse rule's own tests are; the rule is one
database function (sessions_app/ingest/record_inbound.sql), so the race with the sweep runs on two
real connections.
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections, transaction

from sessions_app.lifecycle.boundaries import merge_sessions
from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, ChannelKind, Session, SessionStatus, StatusChange
from sessions_app.search.query import search_sessions
from tests.twilio_helpers import OUR_NUMBER, send_sms

pytestmark = pytest.mark.django_db

S = SessionStatus
TEN_AM = datetime(2025, 1, 15, 10, 0, 0, tzinfo=UTC)
PERSON = "+1234567890"
WINDOW = 120


def at(seconds: float) -> datetime:
    return TEN_AM + timedelta(seconds=seconds)


def our_channel(**fields) -> Channel:
    channel, _ = Channel.objects.update_or_create(kind=ChannelKind.SMS, address=OUR_NUMBER, defaults=fields)
    return channel


def first_session_then(client, status: str, *, after: float, ended_at: float = 10) -> Session:
    """A session opened at 0 and moved to `status` at `ended_at` by staff; then one more message
    `after` seconds after that. Returns the first session, as stored."""
    with time_machine.travel(at(0), tick=False) as clock:
        assert send_sms(client, PERSON, "Is my order shipped?").status_code == 200
        first = Session.objects.get()
        clock.move_to(at(ended_at))
        if status == S.ARCHIVED:
            transition_session(first, S.CLOSED, actor="staff:alice")
        transition_session(first, status, actor="staff:alice")
        clock.move_to(at(ended_at + after))
        assert send_sms(client, PERSON, "thanks!").status_code == 200
    first.refresh_from_db()
    return first


def test_a_message_at_the_windows_limit_reopens_the_closed_session(client, caplog):
    our_channel(reopen_window=WINDOW)
    caplog.set_level("INFO", logger="sessions_app")
    first = first_session_then(client, S.CLOSED, after=WINDOW)

    assert Session.objects.count() == 1
    assert first.status == S.ACTIVE
    assert first.status_changed_at == at(10 + WINDOW)
    assert first.message_count == 2
    assert first.last_message_at == first.last_activity_at == at(10 + WINDOW)
    assert first.first_message_at == at(0)
    assert list(first.messages.values_list("content", flat=True)) == ["Is my order shipped?", "thanks!"]
    change = first.status_changes.order_by("created_at", "id").last()
    assert (change.from_status, change.to_status, change.actor) == (S.CLOSED, S.ACTIVE, "system:reopen")
    assert change.reason == f"a message {WINDOW}s after it was closed"
    assert change.created_at == at(10 + WINDOW)
    lines = [record.getMessage() for record in caplog.records]
    assert f"Reopened session {first.pk} (closed {WINDOW}s ago)" in lines
    # The reopened session's new words are searchable, as a joined message's are.
    assert list(search_sessions(Session.objects.all(), "thanks")) == [first]


def test_a_message_one_second_past_the_window_opens_a_new_session(client):
    our_channel(reopen_window=WINDOW)
    first = first_session_then(client, S.CLOSED, after=WINDOW + 1)

    assert first.status == S.CLOSED
    assert first.message_count == 1
    second = Session.objects.exclude(pk=first.pk).get()
    assert second.status == S.ACTIVE
    assert second.messages.get().content == "thanks!"
    assert not StatusChange.objects.filter(actor="system:reopen").exists()


def test_a_resolved_session_reopens_too_and_the_next_message_joins_it(client):
    our_channel(reopen_window=WINDOW)
    first = first_session_then(client, S.RESOLVED, after=30)
    assert first.status == S.ACTIVE
    with time_machine.travel(at(10 + 30 + 60), tick=False):
        send_sms(client, PERSON, "one more thing")
    first.refresh_from_db()
    assert Session.objects.count() == 1
    assert first.message_count == 3
    assert first.status_changes.filter(actor="system:reopen", from_status=S.RESOLVED).count() == 1


@pytest.mark.parametrize("status", [S.ARCHIVED, S.COMPLETED])
def test_archived_and_completed_sessions_never_reopen(client, status):
    our_channel(reopen_window=WINDOW)
    first = first_session_then(client, status, after=5)
    assert first.status == status
    assert first.message_count == 1
    assert Session.objects.count() == 2


def test_an_abandoned_session_follows_the_reuse_window_and_is_not_reopened(client, settings):
    settings.SESSION_ABANDON_AFTER = 600
    our_channel(reopen_window=3600)
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON, "hello?")
        first = Session.objects.get()
        clock.move_to(at(700))
        assert sweep_sessions().abandoned == 1
        clock.move_to(at(710))  # ended 10 s ago, far inside the reopen window
        send_sms(client, PERSON, "still there?")
    first.refresh_from_db()
    assert first.status == S.ABANDONED
    assert Session.objects.count() == 2


def test_a_merged_session_never_reopens_the_session_it_was_merged_into_does(client):
    our_channel(reopen_window=3600)
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON, "one")
        target = Session.objects.get()
        clock.move_to(at(400))
        send_sms(client, PERSON, "two")  # past the reuse window: a second session
        source = Session.objects.exclude(pk=target.pk).get()
        clock.move_to(at(450))
        transition_session(target, S.CLOSED, actor="staff:alice")
        clock.move_to(at(505))
        merge_sessions(source, target, actor="staff:alice")
        clock.move_to(at(510))
        # The merged session is the pair's newest, but an empty pointer: the conversation's session
        # (closed 60 s ago, inside the window) is the one reopened.
        send_sms(client, PERSON, "three")
    source.refresh_from_db()
    target.refresh_from_db()
    assert source.status == S.MERGED
    assert not source.messages.exists()
    assert target.status == S.ACTIVE
    assert list(target.messages.values_list("content", flat=True)) == ["one", "two", "three"]
    assert Session.objects.count() == 2


def test_no_window_never_reopens_and_the_setting_is_the_default(client, settings):
    our_channel(reopen_window=None)
    settings.SESSION_REOPEN_WINDOW = 0
    first = first_session_then(client, S.CLOSED, after=1)
    assert first.status == S.CLOSED
    assert Session.objects.count() == 2

    Session.objects.all().delete()
    settings.SESSION_REOPEN_WINDOW = 60
    first = first_session_then(client, S.CLOSED, after=60)
    assert first.status == S.ACTIVE
    assert Session.objects.count() == 1


def test_a_channels_zero_overrides_the_setting(client, settings):
    settings.SESSION_REOPEN_WINDOW = 3600
    our_channel(reopen_window=0)
    first = first_session_then(client, S.CLOSED, after=1)
    assert first.status == S.CLOSED


def test_admin_edits_the_reopen_window_in_the_channel_list(admin_client):
    channel = our_channel()
    page = admin_client.get("/admin/sessions_app/channel/")
    assert page.status_code == 200
    assert 'name="form-0-reopen_window"' in page.content.decode()
    form = admin_client.get(f"/admin/sessions_app/channel/{channel.pk}/change/")
    assert 'name="reopen_window"' in form.content.decode()


# --- The race with the sweep: two connections -------------------------------------------------------


def inbound_of(session: Session) -> list[str]:
    session.refresh_from_db()
    assert session.message_count == session.messages.count()
    return list(session.messages.filter(direction="inbound").values_list("content", flat=True))


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_reopen_racing_the_sweeps_archive_waits_for_it_and_opens_a_new_session(client):
    """The sweep holds the closed session's row (archiving it) when the message arrives: the rule
    waits on the row, finds it archived, and opens a new session; nothing is lost or reopened."""
    our_channel(reopen_window=WINDOW, archive_after=60)
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON, "first")
        first = Session.objects.get()
        transition_session(first, S.CLOSED, actor="staff:alice")
        clock.move_to(at(90))  # due for archiving (60 s), inside the reopen window (120 s)
        holding, release = threading.Event(), threading.Event()
        sweeper: dict[str, int] = {}

        def sweep() -> None:
            try:
                with transaction.atomic():
                    sweeper["archived"] = sweep_sessions(parallel=1).archived
                    holding.set()
                    assert release.wait(30)
            finally:
                connections.close_all()

        thread = threading.Thread(target=sweep)
        thread.start()
        answers: list[int] = []
        ingest_pid: dict[str, int] = {}

        def ingest() -> None:
            try:
                ingest_pid["pid"] = _backend_pid()
                answers.append(send_sms(client, PERSON, "thanks!").status_code)
            finally:
                connections.close_all()

        try:
            assert holding.wait(30)
            writer = threading.Thread(target=ingest)
            writer.start()
            # Until the message's transaction waits on the row the sweep holds (at most 30 s).
            waiting = threading.Event()
            for _ in range(3000):
                if "pid" in ingest_pid and _waiting_on_a_lock(ingest_pid["pid"]):
                    break
                waiting.wait(0.01)
            assert "pid" in ingest_pid and _waiting_on_a_lock(ingest_pid["pid"])
        finally:
            release.set()
            thread.join()
        writer.join()
    assert answers == [200]
    assert sweeper["archived"] == 1
    first.refresh_from_db()
    assert first.status == S.ARCHIVED
    assert inbound_of(first) == ["first"]
    new = Session.objects.exclude(pk=first.pk).get()
    assert new.status == S.ACTIVE
    assert inbound_of(new) == ["thanks!"]
    assert not StatusChange.objects.filter(actor="system:reopen").exists()


@pytest.mark.django_db(transaction=True)
def test_a_session_being_reopened_is_skipped_by_the_sweep_and_stays_active(client):
    """The message reopens the session inside a transaction still open when the sweep runs: the
    sweep skips the locked row, and once the reopen commits the session is active, not archived."""
    our_channel(reopen_window=WINDOW, archive_after=60)
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON, "first")
        first = Session.objects.get()
        transition_session(first, S.CLOSED, actor="staff:alice")
        clock.move_to(at(90))
        reopened, swept = threading.Event(), threading.Event()
        answers: list[int] = []

        def ingest() -> None:
            try:
                with transaction.atomic():
                    answers.append(send_sms(client, PERSON, "thanks!").status_code)
                    reopened.set()
                    assert swept.wait(30)
            finally:
                connections.close_all()

        thread = threading.Thread(target=ingest)
        thread.start()
        try:
            assert reopened.wait(30)
            result = sweep_sessions(parallel=1)
        finally:
            swept.set()
            thread.join()
        assert result.archived == 0
        assert sweep_sessions(parallel=1).total == 0  # active now, and just written to
    assert answers == [200]
    first.refresh_from_db()
    assert first.status == S.ACTIVE
    assert inbound_of(first) == ["first", "thanks!"]
    assert first.message_count == first.messages.count()  # the agent's replies included
    assert Session.objects.count() == 1
    assert list(first.status_changes.values_list("to_status", "actor")) == [
        (S.CLOSED, "staff:alice"),
        (S.ACTIVE, "system:reopen"),
    ]
