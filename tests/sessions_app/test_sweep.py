import json
import re
import threading
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.lifecycle.transitions import (
    BEGINNING,
    batch_sql,
    transition_session,
    transition_sessions_batch,
)
from sessions_app.models import (
    Channel,
    ChannelKind,
    Session,
    SessionStatus,
    StatusChange,
)
from tests.factories import ChannelFactory, SessionFactory, sessions_ended_oldest_first
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db
START = "2025-01-15 10:00:00+00:00"
S = SessionStatus


def status_of(session: Session) -> str:
    session.refresh_from_db()
    return session.status


def test_an_active_session_is_abandoned_only_after_30_quiet_minutes():
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory()
        clock.shift(timedelta(minutes=29, seconds=59))
        assert sweep_sessions().abandoned == 0
        assert status_of(session) == S.ACTIVE
        clock.shift(timedelta(seconds=2))
        result = sweep_sessions()
    assert (result.abandoned, result.archived) == (1, 0)
    assert status_of(session) == S.ABANDONED
    change = StatusChange.objects.get(session=session)
    assert (change.from_status, change.to_status, change.actor) == ("active", "abandoned", "system:sweep")


@pytest.mark.parametrize("status", [S.ABANDONED, S.CLOSED, S.RESOLVED, S.COMPLETED])
def test_an_ended_session_is_archived_after_seven_days_of_no_activity(status):
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory(status=status)
        clock.shift(timedelta(days=7) - timedelta(seconds=1))
        assert sweep_sessions().archived == 0
        clock.shift(timedelta(seconds=2))
        assert sweep_sessions().archived == 1
    assert status_of(session) == S.ARCHIVED
    assert StatusChange.objects.get().from_status == status


def test_a_session_quiet_for_over_a_week_is_archived_seven_days_after_it_was_abandoned():
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory()
        clock.shift(timedelta(days=8))
        result = sweep_sessions()  # archiving counts from when the session ended, not its last message
        assert (result.abandoned, result.archived) == (1, 0)
        clock.shift(timedelta(days=7) - timedelta(seconds=1))
        assert sweep_sessions().archived == 0
        clock.shift(timedelta(seconds=2))
        assert sweep_sessions().archived == 1
    assert status_of(session) == S.ARCHIVED
    assert list(StatusChange.objects.values_list("to_status", flat=True)) == ["abandoned", "archived"]


def test_a_second_sweep_moves_nothing():
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(3)
        clock.shift(timedelta(hours=1))
        assert sweep_sessions().abandoned == 3
        assert sweep_sessions().total == 0
    assert StatusChange.objects.count() == 3


def test_it_moves_everything_due_in_bounded_batches():
    Channel.objects.exclude(surface="").delete()  # only the settings' scope: its statements are counted
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(7)
        clock.shift(timedelta(hours=1))
        result = sweep_sessions(batch_size=3)
    assert result.abandoned == 7
    assert result.statements == 3 + 4  # 3 + 3 + 1 abandoned; one empty batch per ended status
    assert not Session.objects.filter(status=S.ACTIVE).exists()
    assert StatusChange.objects.count() == 7


def test_per_channel_thresholds_override_the_settings_and_zero_disables():
    quick = ChannelFactory(address="+15005550001", abandon_after=600)
    never = ChannelFactory(address="+15005550002", abandon_after=0, archive_after=0)
    default = ChannelFactory(address="+15005550003")
    with time_machine.travel(START, tick=False) as clock:
        on_quick, on_never, on_default = (SessionFactory(channel=c) for c in (quick, never, default))
        ended_on_never = SessionFactory(channel=never, status=S.CLOSED)
        clock.shift(timedelta(minutes=11))
        assert sweep_sessions().abandoned == 1
        assert status_of(on_quick) == S.ABANDONED
        assert status_of(on_default) == S.ACTIVE
        clock.shift(timedelta(days=30))
        sweep_sessions()
        assert status_of(on_default) == S.ABANDONED
        clock.shift(timedelta(days=8))
        sweep_sessions()
    assert status_of(on_default) == S.ARCHIVED
    assert status_of(on_never) == S.ACTIVE
    assert status_of(ended_on_never) == S.CLOSED


def test_the_settings_thresholds_apply_and_zero_disables_a_step(settings):
    settings.SESSION_ABANDON_AFTER = 0
    settings.SESSION_ARCHIVE_AFTER = 3600
    with time_machine.travel(START, tick=False) as clock:
        active, closed = SessionFactory(), SessionFactory(status=S.CLOSED)
        clock.shift(timedelta(days=2))
        assert (sweep_sessions().abandoned, status_of(active)) == (0, S.ACTIVE)
    assert status_of(closed) == S.ARCHIVED


def test_a_session_that_just_received_a_message_is_not_abandoned(client):
    with time_machine.travel(START, tick=False) as clock:
        send_sms(client, "+15551230000", "Hello")
        clock.shift(timedelta(minutes=31))
        before = timezone.now() - timedelta(minutes=30)
        send_sms(client, "+15551230000", "Still there?")  # new session: reuse window is 5 minutes
        old, new = Session.objects.order_by("created_at")
        moved = transition_sessions_batch(
            from_statuses=[S.ACTIVE], to_status=S.ABANDONED, inactive_before=before, actor="test"
        )
    assert moved == {S.ACTIVE: 1}
    assert status_of(old) == S.ABANDONED
    assert status_of(new) == S.ACTIVE


def test_the_batch_helper_refuses_moves_the_lifecycle_does_not_allow():
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory(status=S.ARCHIVED)
        clock.shift(timedelta(days=30))
        moved = transition_sessions_batch(
            from_statuses=[S.ARCHIVED], to_status=S.CLOSED, inactive_before=timezone.now(), actor="test"
        )
    assert moved == {}
    assert not StatusChange.objects.exists()


def test_the_command_runs_one_sweep_and_prints_what_it_moved():
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(2)
        eight_days_ago = timezone.now() - timedelta(days=8)
        SessionFactory(status=S.RESOLVED, last_activity_at=eight_days_ago, status_changed_at=eight_days_ago)
        clock.shift(timedelta(hours=1))
        out = StringIO()
        call_command("sweep_sessions", stdout=out)
    assert "abandoned: 2" in out.getvalue()
    assert "archived: 1" in out.getvalue()
    assert "from resolved: 1" in out.getvalue()


def test_a_reuse_window_longer_than_abandon_after_is_refused_per_channel():
    channel = Channel(kind=ChannelKind.SMS, address="+15005550009", reuse_window=900, abandon_after=600)
    with pytest.raises(ValidationError, match=r"reuse window \(900s\) must not be longer than abandon"):
        channel.full_clean()
    Channel(kind=ChannelKind.SMS, address="+15005550009", reuse_window=900, abandon_after=0).full_clean()


def test_transitions_are_listed_in_admin(admin_client):
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory()
        clock.shift(timedelta(hours=1))
        sweep_sessions()
    page = admin_client.get("/admin/sessions_app/statuschange/")
    assert page.status_code == 200
    assert b"system:sweep" in page.content


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_sweeps_move_each_session_once():
    with time_machine.travel(START, tick=False) as clock:
        sessions = SessionFactory.create_batch(300)
        clock.shift(timedelta(hours=1))
        results = []
        barrier = threading.Barrier(2)

        def run() -> None:
            try:
                barrier.wait()
                results.append(sweep_sessions(batch_size=20))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(r.abandoned for r in results) == len(sessions)
    assert StatusChange.objects.count() == len(sessions)
    assert StatusChange.objects.values("session").distinct().count() == len(sessions)
    assert not Session.objects.filter(status=S.ACTIVE).exists()


@pytest.mark.django_db(transaction=True)
def test_one_sweep_on_several_connections_moves_each_session_once():
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(250)
        clock.shift(timedelta(days=8))
        result = sweep_sessions(batch_size=15, parallel=4)
        clock.shift(timedelta(days=8))
        archiving = sweep_sessions(batch_size=15, parallel=4)
    assert (result.abandoned, archiving.archived) == (250, 250)
    assert StatusChange.objects.count() == 500
    assert set(Session.objects.values_list("status", flat=True)) == {S.ARCHIVED}


def test_the_sweep_purges_archived_sessions_past_the_retention_period(settings):
    settings.SESSION_PURGE_AFTER = 30 * 24 * 3600
    with time_machine.travel(START, tick=False) as clock:
        kept = SessionFactory(status=S.ARCHIVED)
        StatusChange.objects.create(session=kept, from_status=S.CLOSED, to_status=S.ARCHIVED, actor="test")
        clock.shift(timedelta(days=20))
        recent = SessionFactory(status=S.ARCHIVED)
        clock.shift(timedelta(days=10, seconds=1))
        result = sweep_sessions()
        out = StringIO()
        call_command("sweep_sessions", stdout=out)
    assert result.purged == 1
    assert not Session.objects.filter(pk=kept.pk).exists()
    # No database constraint ties a change to its session (models.StatusChange): the ORM's cascade does.
    assert not StatusChange.objects.filter(session_id=kept.pk).exists()
    assert Session.objects.filter(pk=recent.pk).exists()
    assert "purged: 0" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_session_ingest_is_bumping_while_the_sweep_runs_is_skipped_and_stays_active():
    """Ingest holds the session's row (its bump) across the sweep: the sweep neither waits for it nor
    moves it, and once the bump commits the session is no longer due."""
    with time_machine.travel(START, tick=False) as clock:
        busy, idle = SessionFactory.create_batch(2)
        clock.shift(timedelta(hours=1))
        locked, swept = threading.Event(), threading.Event()
        bumped_at = timezone.now()

        def ingest() -> None:
            try:
                with transaction.atomic():
                    # What record_inbound_message does to a session it reuses.
                    Session.objects.filter(pk=busy.pk, status=S.ACTIVE).update(
                        message_count=F("message_count") + 1, last_activity_at=bumped_at
                    )
                    locked.set()
                    assert swept.wait(30)
            finally:
                connections.close_all()

        thread = threading.Thread(target=ingest)
        thread.start()
        try:
            assert locked.wait(30)
            result = sweep_sessions(batch_size=1, parallel=2)
        finally:
            swept.set()
            thread.join()
        assert result.abandoned == 1
        assert status_of(idle) == S.ABANDONED
        assert status_of(busy) == S.ACTIVE
        assert sweep_sessions().total == 0  # the bump made it recent: not due any more
    assert status_of(busy) == S.ACTIVE
    assert list(StatusChange.objects.values_list("session_id", flat=True)) == [idle.pk]


@pytest.mark.django_db(transaction=True)
def test_a_batch_does_not_wait_for_its_wal_flush_but_leaves_the_connection_as_it_was():
    seen = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if "sessions_app_statuschange" in sql:
            with context["connection"].cursor() as cursor:
                cursor.execute("SHOW synchronous_commit")
                seen.append(cursor.fetchone()[0])
        return execute(sql, params, many, context)

    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(2)
        clock.shift(timedelta(hours=1))
        with connection.execute_wrapper(spy):
            assert sweep_sessions(parallel=1).abandoned == 2
            with transaction.atomic():  # inside a caller's transaction, the caller's setting stands
                SessionFactory()
                clock.shift(timedelta(hours=1))
                assert sweep_sessions().abandoned == 1
    assert seen[0] == "off"
    assert seen[-1] == "on"
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def _claim_plan(source: str, since, before, limit: int, analyze: bool = False) -> str:
    """The plan of one batch statement of `transition_sessions_batch` for `source`; with `analyze`,
    run (and rolled back) to count the rows it read."""
    params = {
        "source": source,
        "since": since,
        "before": before,
        "limit": limit,
        "to": S.ABANDONED,
        "now": before,
        "actor": "",
        "reason": "",
    }
    explain = "EXPLAIN (ANALYZE, FORMAT JSON)" if analyze else "EXPLAIN"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"{explain} {batch_sql()}", params)
        rows = cursor.fetchall()
        transaction.set_rollback(True)
    if analyze:
        plan = rows[0][0]
        return json.dumps(json.loads(plan) if isinstance(plan, str) else plan)
    return "\n".join(row[0] for row in rows)


def _rows_removed(analyzed: str) -> int:
    return sum(int(n) for n in re.findall(r'"Rows Removed by Filter": (\d+)', analyzed))


@pytest.mark.django_db(transaction=True)
def test_the_claim_walks_only_sessions_in_the_source_status_however_many_older_ones_have_ended():
    """Sessions end oldest first, so the oldest end of the recency index is all ended sessions, and
    rows lie in the table in the order they were last written. The planner, which assumes status and
    age independent, then likes walking the recency index from its oldest end and filtering on the
    status: every batch would read past every ended session (1.6 s a batch at 400,000)."""
    channel = ChannelFactory()
    now = timezone.now()
    # The ended half mixes two statuses, one sorting before 'active' and one after, as a real
    # table's mix does, so the status column's own order says little about position.
    sessions_ended_oldest_first(channel, now, ended=(S.ABANDONED, S.RESOLVED))
    plan = _claim_plan(S.ACTIVE, BEGINNING, now - timedelta(hours=2), 5000)
    assert "session_status_recent" in plan, plan
    assert "session_recent " not in plan, plan
    assert "Tid Scan" in plan, plan  # the update finds the claimed rows where they are, not by key
    analyzed = _claim_plan(S.ACTIVE, BEGINNING, now - timedelta(hours=2), 5000, analyze=True)
    assert _rows_removed(analyzed) == 0, analyzed


@pytest.mark.django_db(transaction=True)
def test_a_sweep_reads_no_abandoned_session_waiting_to_be_archived():
    """Abandoned sessions have an index range of their own: the claim of quiet active sessions reads
    none of them, however many wait to be archived (under the status group of migration 0014 they
    shared one, and a claim from the oldest read past every one)."""
    channel = ChannelFactory()
    now = timezone.now()
    sessions_ended_oldest_first(channel, now, ended=(S.ABANDONED, S.ARCHIVED))
    claims: list = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if "WITH picked AS" in sql and params["source"] == S.ACTIVE:
            claims.append(params)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy), time_machine.travel(now, tick=False):
        sweep_sessions(parallel=1)
    assert claims and claims[0]["since"] == BEGINNING  # from the oldest active session
    before = now - timedelta(minutes=20)
    assert _rows_removed(_claim_plan(S.ACTIVE, BEGINNING, before, 5000, analyze=True)) == 0


def test_a_session_reopened_long_after_its_last_activity_is_abandoned_by_the_next_sweep():
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory()
        clock.shift(timedelta(hours=2))
        assert sweep_sessions().abandoned == 1
        clock.shift(timedelta(minutes=1))
        transition_session(session, S.ACTIVE, actor="user:staff")  # last activity two hours back
        clock.shift(timedelta(minutes=1))
        assert sweep_sessions().abandoned == 1
    assert status_of(session) == S.ABANDONED


def _is_claim(sql: str) -> bool:
    """A batch's claim."""
    return "WITH picked AS" in sql


def test_a_session_reopened_just_before_a_claim_is_claimed_by_it():
    """Staff reopen a session quiet for two hours just as the sweep's claim of active sessions runs:
    the claim sees it as due (its last activity is what counts) and abandons it at once, never later
    than the next sweep."""
    reopened: list[bool] = []
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory()
        clock.shift(timedelta(hours=2))
        assert sweep_sessions().abandoned == 1
        clock.shift(timedelta(minutes=1))

        def reopen_first(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            if not reopened and _is_claim(sql):  # the sweep's first claim: abandonment comes first
                reopened.append(True)
                transition_session(session, S.ACTIVE, actor="user:staff")
            return execute(sql, params, many, context)

        with connection.execute_wrapper(reopen_first):
            assert sweep_sessions().abandoned == 1
        assert reopened
    assert status_of(session) == S.ABANDONED
    assert list(StatusChange.objects.filter(session=session).values_list("to_status", flat=True)) == [
        S.ABANDONED,
        S.ACTIVE,
        S.ABANDONED,
    ]


def test_a_session_reopened_during_a_sweep_under_a_new_threshold_is_abandoned_by_the_next_sweep(settings):
    """A changed threshold while a session is reopened between two claims of one sweep: the next
    sweep still finds it."""
    reopened: list[bool] = []
    claims: list[bool] = []
    with time_machine.travel(START, tick=False) as clock:
        behind = SessionFactory()
        clock.shift(timedelta(hours=2))
        assert sweep_sessions().abandoned == 1
        later = SessionFactory(last_activity_at=timezone.now() - timedelta(minutes=50))
        clock.shift(timedelta(minutes=1))
        settings.SESSION_ABANDON_AFTER = 1200  # a new scope: no mark

        def reopen_at_second_claim(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            if not reopened and _is_claim(sql):
                claims.append(True)
                if len(claims) == 2:  # the first span (the reopened session's) is behind the drain
                    reopened.append(True)
                    transition_session(behind, S.ACTIVE, actor="user:staff")
            return execute(sql, params, many, context)

        with connection.execute_wrapper(reopen_at_second_claim):
            assert sweep_sessions().abandoned == 1  # `later`
        assert reopened
        clock.shift(timedelta(minutes=1))
        assert sweep_sessions().abandoned == 1
    assert status_of(behind) == S.ABANDONED
    assert status_of(later) == S.ABANDONED


def test_a_session_imported_with_old_activity_is_abandoned_by_the_next_sweep():
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory()
        clock.shift(timedelta(hours=2))
        assert sweep_sessions().abandoned == 1
        # Written with old activity by something that is not a transition (a bulk import, say).
        imported = SessionFactory(last_activity_at=timezone.now() - timedelta(hours=3))
        clock.shift(timedelta(minutes=1))
        assert sweep_sessions().abandoned == 1
    assert status_of(imported) == S.ABANDONED


def test_an_old_session_on_a_channel_that_never_abandons_costs_the_sweep_nothing_per_hour_of_its_age():
    """An active session a year old on a channel that never abandons: the sweep's statements do not
    grow with the stretch of time before the due sessions."""
    never = ChannelFactory(address="+15005550002", abandon_after=0)
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory(channel=never)
        clock.shift(timedelta(days=365))
        due = SessionFactory()
        clock.shift(timedelta(hours=1))
        result = sweep_sessions()
    assert result.abandoned == 1
    assert status_of(due) == S.ABANDONED
    assert result.statements < 20, result


def test_a_status_change_needs_its_session_in_the_database():
    """The foreign key of StatusChange.session is the database's own, not only the ORM's."""
    with pytest.raises(IntegrityError), transaction.atomic():
        StatusChange.objects.create(
            session_id="00000000-0000-0000-0000-000000000000",
            from_status=S.ACTIVE,
            to_status=S.ABANDONED,
            actor="test",
        )
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
