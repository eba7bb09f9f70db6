"""The daily rollup: filled by the beat task, corrected by late data, claimed atomically."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction

from sessions_app.delivery.outbound import record_outbound_message
from sessions_app.models import ChannelKind, DailyRollup, Direction, Role, RollupDay, Session
from sessions_app.reports import rollup
from sessions_app.reports.metrics import Figures, Selection, live_figures
from sessions_app.tasks import refresh_report_rollups
from tests.reports.builders import add_message, make_session

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 13, 12, tzinfo=UTC)
EVERYTHING = Selection()


def live_day(day: date, tz: ZoneInfo = UTC_ZONE) -> Figures:
    total = Figures()
    for figures in live_figures(day, day, tz, EVERYTHING).values():
        total.add(figures)
    return total


def agent_answered(day: date, hour: int = 9) -> Session:
    session = make_session(datetime(day.year, day.month, day.day, hour, tzinfo=UTC), ChannelKind.SMS)
    add_message(session, session.created_at, Direction.INBOUND, Role.CONTACT)
    add_message(session, session.created_at + timedelta(seconds=12), Direction.OUTBOUND, Role.AGENT)
    return session


@pytest.mark.django_db
def test_the_beat_task_fills_every_past_day_once_and_leaves_today_live():
    agent_answered(date(2026, 11, 10))
    agent_answered(date(2026, 11, 13))
    with time_machine.travel(NOW, tick=False):
        assert refresh_report_rollups.delay().get() == {"marked": 3, "computed": 3, "pending": 0}
        assert refresh_report_rollups.delay().get() == {"marked": 0, "computed": 0, "pending": 0}
    assert sorted(RollupDay.objects.values_list("day", "stale")) == [
        (date(2026, 11, 10), False),
        (date(2026, 11, 11), False),
        (date(2026, 11, 12), False),
    ]
    # Days with nothing in them have no rows, only their RollupDay saying they were computed. A day
    # with sessions has a row per kind and business, and its totals (None: every kind or business).
    assert sorted(
        DailyRollup.objects.values_list("day", "channel_kind", "business_id", "sessions_opened"),
        key=str,
    ) == sorted(
        [
            (date(2026, 11, 10), kind, business, 1)
            for kind in (ChannelKind.SMS, None)
            for business in ("", None)
        ],
        key=str,
    )


@pytest.mark.django_db
def test_late_data_is_corrected_at_the_next_run():
    old = agent_answered(date(2026, 11, 10))
    with time_machine.travel(NOW, tick=False):
        rollup.refresh_rollups()
    assert (
        rollup.rolled_up(date(2026, 11, 10), date(2026, 11, 10), UTC_ZONE, EVERYTHING)[
            date(2026, 11, 10)
        ].agent_only_sessions
        == 1
    )
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        # Staff answer the old session today: its day's cohort is no longer agent-only.
        record_outbound_message(old, "Sorry for the wait", role=Role.STAFF)
        # And a message with an old time reaches a session of the 11th (an import, say), through a
        # write that bumps the session's updated_at as every write path does.
        other = agent_answered(date(2026, 11, 11))
        add_message(other, datetime(2026, 11, 11, 10, tzinfo=UTC), Direction.INBOUND, Role.CONTACT)
        Session.objects.filter(pk=other.pk).update(updated_at=NOW + timedelta(hours=1))
        result = rollup.refresh_rollups()
        assert result.marked == 2 and result.computed == 2
        stored = rollup.rolled_up(date(2026, 11, 10), date(2026, 11, 12), UTC_ZONE, EVERYTHING)
    assert stored[date(2026, 11, 10)].agent_only_sessions == 0
    assert stored[date(2026, 11, 11)].messages_inbound == 2
    for day, figures in stored.items():
        assert figures == live_day(day), day


@pytest.mark.django_db
def test_a_change_of_time_zone_recomputes_every_day_in_the_new_one(settings):
    agent_answered(date(2026, 11, 10), hour=23)  # 00:00 on the 11th in Paris
    with time_machine.travel(NOW, tick=False):
        rollup.refresh_rollups()
        settings.TIME_ZONE = "Europe/Paris"
        paris = ZoneInfo("Europe/Paris")
        assert rollup.rolled_up(date(2026, 11, 10), date(2026, 11, 12), paris, EVERYTHING) == {}
        rollup.refresh_rollups()
        stored = rollup.rolled_up(date(2026, 11, 10), date(2026, 11, 12), paris, EVERYTHING)
    assert stored[date(2026, 11, 10)].sessions_opened == 0
    assert stored[date(2026, 11, 11)].sessions_opened == 1
    assert stored[date(2026, 11, 11)] == live_day(date(2026, 11, 11), paris)


@contextlib.contextmanager
def another_worker_holding(day: date) -> Iterator[None]:
    """Another worker's transaction holds `day`'s RollupDay row locked for the length of the block."""
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                RollupDay.objects.select_for_update().get(day=day)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        release.set()
        worker.join()


@pytest.mark.django_db(transaction=True)
def test_a_day_another_worker_is_computing_is_skipped_not_waited_for():
    agent_answered(date(2026, 11, 10))
    with time_machine.travel(NOW, tick=False):
        rollup.mark_stale_days()
    with another_worker_holding(date(2026, 11, 12)):
        with time_machine.travel(NOW, tick=False):
            assert rollup.compute_next_day() and rollup.compute_next_day()
            assert not rollup.compute_next_day()  # only the locked day is left
        assert sorted(RollupDay.objects.filter(stale=True).values_list("day", flat=True)) == [
            date(2026, 11, 12)
        ]


@pytest.mark.django_db
def test_the_rollup_in_a_zone_with_a_dst_change_equals_the_live_days(settings):
    settings.TIME_ZONE = "Europe/Paris"  # 2026-03-29 has 23 hours there
    paris = ZoneInfo("Europe/Paris")
    for moment in ("2026-03-28T23:30:00+00:00", "2026-03-29T21:30:00+00:00", "2026-03-29T22:30:00+00:00"):
        agent_answered_at = datetime.fromisoformat(moment)
        session = make_session(agent_answered_at, ChannelKind.SMS)
        add_message(session, agent_answered_at, Direction.INBOUND, Role.CONTACT)
        add_message(session, agent_answered_at + timedelta(minutes=61), Direction.OUTBOUND, Role.AGENT)
    with time_machine.travel(datetime(2026, 4, 2, 12, tzinfo=UTC), tick=False):
        rollup.refresh_rollups()
        stored = rollup.rolled_up(date(2026, 3, 28), date(2026, 3, 30), paris, EVERYTHING)
    # The first session is on the 29th in Paris (00:30), so the rollup starts there.
    assert {day: figures.sessions_opened for day, figures in stored.items()} == {
        date(2026, 3, 29): 2,
        date(2026, 3, 30): 1,
    }
    for day, figures in stored.items():
        assert figures == live_day(day, paris), day


@pytest.mark.django_db
def test_yesterdays_provisional_rollup_is_not_read_and_the_daily_task_makes_it_final():
    day = date(2026, 11, 13)
    agent_answered(day)
    with time_machine.travel(datetime(2026, 11, 13, 23, 59, 30, tzinfo=UTC), tick=False):
        assert rollup.refresh_today()
        assert rollup.rolled_up(day, day, UTC_ZONE, EVERYTHING)[day].sessions_opened == 1
        agent_answered(day, hour=23)  # after the last provisional run, before midnight
    with time_machine.travel(datetime(2026, 11, 14, 0, 0, 20, tzinfo=UTC), tick=False):
        # Its provisional figures, though only 50 s old, miss the last half minute: not read.
        assert rollup.rolled_up(day, day, UTC_ZONE, EVERYTHING) == {}
        result = rollup.refresh_rollups()
        assert result.computed == 1 and result.pending == 0
        stored = rollup.rolled_up(day, day, UTC_ZONE, EVERYTHING)
    assert stored[day].sessions_opened == 2 and stored[day] == live_day(day)
    assert RollupDay.objects.get(day=day).provisional is False


@pytest.mark.django_db
def test_todays_rollup_is_recomputed_each_run_and_read_only_while_recent(settings):
    agent_answered(date(2026, 11, 13), hour=8)
    with time_machine.travel(NOW, tick=False) as traveller:
        assert rollup.refresh_today()
        assert not rollup.refresh_today()  # a second run at once finds it just computed
        agent_answered(date(2026, 11, 13), hour=9)
        traveller.shift(settings.REPORTS_TODAY_INTERVAL)
        assert rollup.refresh_today()
        stored = rollup.rolled_up(date(2026, 11, 13), date(2026, 11, 13), UTC_ZONE, EVERYTHING)
        assert stored[date(2026, 11, 13)].sessions_opened == 2
        assert stored[date(2026, 11, 13)] == live_day(date(2026, 11, 13))
        computed_at = RollupDay.objects.get(day=date(2026, 11, 13)).computed_at
        assert computed_at == NOW + timedelta(seconds=settings.REPORTS_TODAY_INTERVAL)
        traveller.shift(settings.REPORTS_TODAY_MAX_AGE + 1)
        assert rollup.rolled_up(date(2026, 11, 13), date(2026, 11, 13), UTC_ZONE, EVERYTHING) == {}
        # The daily task leaves today to it.
        assert rollup.refresh_rollups().computed == 0  # no day before today has sessions
        assert RollupDay.objects.get(day=date(2026, 11, 13)).provisional is True


@pytest.mark.django_db(transaction=True)
def test_a_today_run_skips_while_another_worker_computes_today():
    agent_answered(date(2026, 11, 13))
    with time_machine.travel(NOW, tick=False):
        assert rollup.refresh_today()
    with another_worker_holding(date(2026, 11, 13)):
        with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
            assert not rollup.refresh_today()
        assert RollupDay.objects.get(day=date(2026, 11, 13)).computed_at == NOW
