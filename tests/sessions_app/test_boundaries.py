"""Merge and split against messages arriving at the same moment: two real connections.

Both take the lock the reuse rule takes for the (channel, contact) pair, so a message that arrives
while staff merge waits, then lands where the new boundaries put it (lifecycle/boundaries.py).
"""

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections, transaction

from sessions_app.lifecycle.boundaries import BoundaryRefused, merge_sessions, split_session
from sessions_app.models import Session, SessionStatus
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db(transaction=True)

S = SessionStatus
TEN_AM = datetime(2025, 1, 15, 10, 0, 0, tzinfo=UTC)
PERSON = "+1234567890"


def at(seconds: float) -> datetime:
    return TEN_AM + timedelta(seconds=seconds)


def inbound_of(session: Session) -> list[str]:
    session.refresh_from_db()
    assert session.message_count == session.messages.count()
    return list(session.messages.filter(direction="inbound").values_list("content", flat=True))


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_blocked(pids: dict[str, int], name: str) -> None:
    """Until the connection `pids[name]` waits on a lock (at most 30 s)."""
    pause = threading.Event()
    for _ in range(3000):
        if name in pids:
            with connection.cursor() as cursor:
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pids[name]])
                row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
        pause.wait(0.01)
    raise AssertionError(f"{name} never waited on a lock")


def two_sessions(client, clock) -> tuple[Session, Session]:
    """The older session (a message at 0) and the newer (one at 400, past the reuse window)."""
    send_sms(client, PERSON, "one")
    older = Session.objects.get()
    clock.move_to(at(400))
    send_sms(client, PERSON, "two")
    newer = Session.objects.exclude(pk=older.pk).get()
    clock.move_to(at(410))
    return older, newer


def in_thread(target, pids: dict[str, int], name: str, results: list) -> threading.Thread:
    def run() -> None:
        try:
            pids[name] = backend_pid()
            results.append(target())
        except Exception as exc:  # reported by the assertions on `results`
            results.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_message_arriving_during_a_merge_waits_and_joins_the_merged_session(client):
    with time_machine.travel(at(0), tick=False) as clock:
        older, newer = two_sessions(client, clock)
        pids: dict[str, int] = {}
        answers: list = []
        with transaction.atomic():
            merge_sessions(newer, older, actor="staff:alice")
            # The newer session was the pair's newest active one: the message would have joined it.
            writer = in_thread(lambda: send_sms(client, PERSON, "three").status_code, pids, "ingest", answers)
            wait_until_blocked(pids, "ingest")
        writer.join()
    assert answers == [200]
    assert inbound_of(older) == ["one", "two", "three"]
    newer.refresh_from_db()
    assert (newer.status, newer.merged_into_id, newer.message_count) == (S.MERGED, older.pk, 0)
    assert Session.objects.count() == 2


def test_a_merge_waits_for_a_message_being_stored_and_moves_it_too(client):
    with time_machine.travel(at(0), tick=False) as clock:
        older, newer = two_sessions(client, clock)
        pids: dict[str, int] = {}
        stored, release = threading.Event(), threading.Event()
        answers: list = []
        merged: list = []

        def ingest() -> int:
            with transaction.atomic():
                status = send_sms(client, PERSON, "three").status_code  # joins the newer session
                stored.set()
                assert release.wait(30)
            return status

        writer = in_thread(ingest, pids, "ingest", answers)
        try:
            assert stored.wait(30)
            merger = in_thread(
                lambda: merge_sessions(newer, older, actor="staff:alice"), pids, "merge", merged
            )
            wait_until_blocked(pids, "merge")
        finally:
            release.set()
            writer.join()
        merger.join()
    assert answers == [200]
    assert isinstance(merged[0], Session) and merged[0].pk == older.pk
    assert inbound_of(older) == ["one", "two", "three"]
    assert Session.objects.get(pk=newer.pk).message_count == 0


def test_two_opposite_merges_of_the_same_sessions_do_not_deadlock_and_one_wins(client):
    with time_machine.travel(at(0), tick=False) as clock:
        older, newer = two_sessions(client, clock)
        pids: dict[str, int] = {}
        results: list = []
        with transaction.atomic():
            merge_sessions(newer, older, actor="staff:alice")
            other = in_thread(lambda: merge_sessions(older, newer, actor="staff:bob"), pids, "other", results)
            wait_until_blocked(pids, "other")
        other.join()
    assert isinstance(results[0], BoundaryRefused) and results[0].conflict
    assert inbound_of(older) == ["one", "two"]


def test_a_message_after_a_split_joins_the_newer_part(client):
    with time_machine.travel(at(0), tick=False) as clock:
        send_sms(client, PERSON, "one")
        clock.move_to(at(60))
        send_sms(client, PERSON, "two")
        session = Session.objects.get()
        clock.move_to(at(90))
        cut = session.messages.get(content="two")
        new = split_session(session, cut.pk, actor="staff:alice")
        clock.move_to(at(120))
        send_sms(client, PERSON, "three")
    assert inbound_of(session) == ["one"]
    assert inbound_of(new) == ["two", "three"]
