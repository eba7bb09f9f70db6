import json
import re
import threading
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from sessions_app.lifecycle import sweep
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
    SweepMark,
    status_group,
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


def test_a_session_quiet_for_over_a_week_is_abandoned_then_archived_in_one_sweep():
    with time_machine.travel(START, tick=False) as clock:
        session = SessionFactory()
        clock.shift(timedelta(days=8))
        result = sweep_sessions()  # both steps count from the last message
    assert (result.abandoned, result.archived) == (1, 1)
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
        SessionFactory(status=S.RESOLVED, last_activity_at=timezone.now() - timedelta(days=8))
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_overlapping_sweeps_move_each_session_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises writers, so sweeps cannot overlap there")
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_sweep_on_several_connections_moves_each_session_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: parallel sweeping is PostgreSQL-only")
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(250)
        clock.shift(timedelta(days=8))
        result = sweep_sessions(batch_size=15, parallel=4)
    assert (result.abandoned, result.archived) == (250, 250)
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_session_ingest_is_bumping_while_the_sweep_runs_is_skipped_and_stays_active():
    """Ingest holds the session's row (its bump) across the sweep: the sweep neither waits for it nor
    moves it, and once the bump commits the session is no longer due."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises writers, so ingest cannot run inside a sweep")
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_batch_does_not_wait_for_its_wal_flush_but_leaves_the_connection_as_it_was():
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting")
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
        "group": status_group(source),
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_claim_walks_only_sessions_in_the_source_status_group_however_many_older_ones_have_ended():
    """Sessions end oldest first, so the oldest end of the recency index is all ended sessions, and
    rows lie in the table in the order they were last written. The planner, which assumes status and
    age independent, then likes walking the recency index from its oldest end and filtering on the
    status: every batch would read past every ended session (1.6 s a batch at 400,000)."""
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's plans")
    channel = ChannelFactory()
    now = timezone.now()
    # The ended half mixes two statuses, one sorting before 'open' and one after, as a real
    # table's mix does, so the group column's own order says little about position.
    sessions_ended_oldest_first(channel, now, ended=(S.CLOSED, S.RESOLVED))
    plan = _claim_plan(S.ACTIVE, BEGINNING, now - timedelta(hours=2), 5000)
    assert "session_group_recent" in plan, plan
    assert "session_recent " not in plan, plan
    assert "Tid Scan" in plan, plan  # the update finds the claimed rows where they are, not by key
    analyzed = _claim_plan(S.ACTIVE, BEGINNING, now - timedelta(hours=2), 5000, analyze=True)
    assert _rows_removed(analyzed) == 0, analyzed


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_sweep_starts_where_the_last_one_stopped_not_at_the_oldest_abandoned_session():
    """Abandoned sessions share the index range of active ones (`Session.status_group`): a claim
    from the oldest of them reads past every abandoned session still waiting to be archived. The
    sweep's mark starts the next drain where the last one stopped."""
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's plans")
    channel = ChannelFactory()
    now = timezone.now()
    sessions_ended_oldest_first(channel, now, ended=(S.ABANDONED, S.ARCHIVED))
    starts: list = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if "WITH picked AS" in sql and params["source"] == S.ACTIVE:
            starts.append(params["since"])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy), time_machine.travel(now, tick=False) as clock:
        sweep_sessions(parallel=1)  # the first: a full pass, from the oldest open session
        clock.shift(timedelta(minutes=1))
        sweep_sessions(parallel=1)
    mark = SweepMark.objects.get(source=S.ACTIVE)
    assert mark.swept_before == now + timedelta(minutes=1) - timedelta(seconds=settings.SESSION_ABANDON_AFTER)
    assert starts[0] == now - timedelta(seconds=60000 - 2)  # the oldest abandoned session (row 2)
    assert starts[-1] == now - timedelta(seconds=settings.SESSION_ABANDON_AFTER) - sweep.REVISIT
    before = now - timedelta(minutes=20)
    from_the_oldest = _rows_removed(_claim_plan(S.ACTIVE, starts[0], before, 5000, analyze=True))
    from_the_mark = _rows_removed(_claim_plan(S.ACTIVE, starts[-1], before, 5000, analyze=True))
    assert from_the_oldest >= 15_000  # every abandoned session
    assert from_the_mark < 1_000  # the few minutes since the last drain


def test_a_session_reopened_behind_the_mark_is_abandoned_by_the_next_sweep():
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
    """A batch's claim: the SQL statement on PostgreSQL, the ORM's select on SQLite."""
    return "WITH picked AS" in sql or (
        '"status" IN' in sql and "status_group" not in sql and 'last_activity_at" >= ' in sql
    )


def test_a_session_reopened_while_a_sweep_runs_is_abandoned_by_the_next_one():
    """The running sweep chose where to start before the session was reopened behind it, so it
    cannot find it; the mark it leaves must not cover it either."""
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
            assert sweep_sessions().abandoned == 0
        assert reopened
        clock.shift(timedelta(minutes=1))
        assert sweep_sessions().abandoned == 1
    assert status_of(session) == S.ABANDONED


def test_a_session_reopened_behind_a_new_scopes_first_pass_is_abandoned_by_the_next_sweep(settings):
    """A new scope (here: a changed threshold) starts with a pass from the oldest open session, in
    spans of last activity; a session reopened behind the span being claimed must still be found."""
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


def test_an_hourly_pass_from_the_oldest_session_finds_what_no_mark_knows_of():
    with time_machine.travel(START, tick=False) as clock:
        SessionFactory()
        clock.shift(timedelta(hours=2))
        assert sweep_sessions().abandoned == 1
        # Written behind the mark by something that is not a transition (a bulk import, say).
        imported = SessionFactory(last_activity_at=timezone.now() - timedelta(hours=3))
        clock.shift(timedelta(minutes=1))
        assert sweep_sessions().abandoned == 0
        clock.shift(sweep.FULL_PASS_EVERY)
        assert sweep_sessions().abandoned == 1
    assert status_of(imported) == S.ABANDONED


def test_a_full_pass_steps_over_empty_stretches_of_time():
    """An active session a year old on a channel that never abandons must not make each hourly pass
    one statement per hour of that year."""
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


def test_a_changed_threshold_drops_the_old_scopes_mark(settings):
    with time_machine.travel(START, tick=False):
        sweep_sessions()
        old = set(SweepMark.objects.values_list("key", flat=True))
        settings.SESSION_ABANDON_AFTER = 3600
        sweep_sessions()
        new = set(SweepMark.objects.values_list("key", flat=True))
    assert len(old) == len(new) == 5  # one step of one status, one of four
    assert len(old & new) == 4  # the archive step's scopes are the same


@pytest.mark.postgres
def test_the_sweeps_change_of_status_writes_no_index_entry():
    """No index mentions the status, so abandoning a session is a heap-only update, provided its page
    has room for the new version (the table's fillfactor leaves it; within one transaction the old
    versions take their space until it commits, so a few sessions here, on one page): the sweep's
    cost does not grow with the table's indexes."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's heap-only updates")

    def hot_updates() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_get_xact_tuples_hot_updated('sessions_app_session'::regclass)")
            return int(cursor.fetchone()[0])

    with time_machine.travel(START, tick=False) as clock:
        SessionFactory.create_batch(6)
        clock.shift(timedelta(hours=1))
        before = hot_updates()
        assert sweep_sessions().abandoned == 6
        assert hot_updates() - before == 6
