"""Each report figure computed by hand on generated sessions, against the live computation, the rollup
and the summary endpoint (docs/reports.md)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from sessions_app.models import (
    ChannelKind,
    Direction,
    Role,
    SessionStatus,
    StatusChange,
)
from sessions_app.reports import rollup
from sessions_app.reports.metrics import BUCKET_SQL, EXACT_BELOW, Figures, Selection, bucket, live_figures
from sessions_app.reports.summary import summarise
from tests.reports.builders import add_change, add_message, make_session

pytestmark = pytest.mark.django_db

UTC_ZONE = ZoneInfo("UTC")
D = date(2026, 11, 10)
EVERYTHING = Selection()
# What the rollup keeps rows for: everything, kinds, a business, both; and one with nothing in it.
SELECTIONS = (
    Selection(),
    Selection(kinds=(ChannelKind.SMS,)),
    Selection(kinds=(ChannelKind.SMS, ChannelKind.WEB)),
    Selection(business_id="B1"),
    Selection(business_id=""),
    Selection(kinds=(ChannelKind.WEB,), business_id="B1"),
    Selection(kinds=(ChannelKind.SMS,), business_id="B1"),
)


def at(hh: int, mm: int = 0, ss: int = 0, day: date = D) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=UTC)


def percentile_cont(values: list[int], fraction: float) -> float:
    """PostgreSQL's percentile_cont, by hand: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    return low + (high - low) * (rank - math.floor(rank))


def generated_day() -> dict[str, object]:
    """Sessions on day D covering every rule; returns what each figure must be, worked out by hand."""
    # S1: staff answers before the agent; resolved after 10 minutes.
    s1 = make_session(at(10), ChannelKind.SMS)
    add_message(s1, at(10), Direction.INBOUND, Role.CONTACT)
    add_message(s1, at(10, 0, 30), Direction.OUTBOUND, Role.STAFF)
    add_message(s1, at(10, 0, 45), Direction.OUTBOUND, Role.AGENT)
    add_change(s1, at(10, 10), SessionStatus.ACTIVE, SessionStatus.RESOLVED, "staff:ana")
    # S2: never answered, then abandoned.
    s2 = make_session(at(11), ChannelKind.SMS)
    add_message(s2, at(11), Direction.INBOUND, Role.CONTACT)
    add_change(s2, at(11, 30), SessionStatus.ACTIVE, SessionStatus.ABANDONED, "system:sweep")
    # S3: the agent alone; closed, reopened by an inbound message, resolved.
    s3 = make_session(at(12), ChannelKind.WHATSAPP)
    add_message(s3, at(12), Direction.INBOUND, Role.CONTACT)
    add_message(s3, at(12, 0, 10), Direction.OUTBOUND, Role.AGENT)
    add_change(s3, at(12, 1, 40), SessionStatus.ACTIVE, SessionStatus.CLOSED, "staff:ana")
    add_change(s3, at(12, 3, 20), SessionStatus.CLOSED, SessionStatus.ACTIVE, "system:reopen")
    add_message(s3, at(12, 3, 30), Direction.INBOUND, Role.CONTACT)
    add_message(s3, at(12, 3, 35), Direction.OUTBOUND, Role.AGENT)
    add_change(s3, at(12, 5), SessionStatus.ACTIVE, SessionStatus.RESOLVED, "staff:ana")
    # S4: a web session of business B1, merged into another (issue 22's status, written directly).
    s4 = make_session(at(13), ChannelKind.WEB, business_id="B1")
    add_message(s4, at(13), Direction.INBOUND, Role.CONTACT)
    add_message(s4, at(13, 0, 5), Direction.OUTBOUND, Role.AGENT)
    add_message(s4, at(13, 0, 20), Direction.INBOUND, Role.CONTACT)
    add_message(s4, at(13, 0, 26), Direction.OUTBOUND, Role.AGENT)
    add_change(s4, at(13, 0, 50), SessionStatus.ACTIVE, SessionStatus.MERGED, "staff:ana")
    # S5: the agent greets first; the first response is the reply after the first inbound message.
    s5 = make_session(at(14), ChannelKind.SMS)
    add_message(s5, at(14), Direction.OUTBOUND, Role.AGENT)
    add_message(s5, at(14, 1), Direction.INBOUND, Role.CONTACT)
    add_message(s5, at(14, 1, 30), Direction.OUTBOUND, Role.AGENT)
    # S6: asked just before midnight, answered after it: the reply counts on the next day, the
    # response time in the session's own day.
    s6 = make_session(at(23, 59, 50), ChannelKind.SMS)
    add_message(s6, at(23, 59, 50), Direction.INBOUND, Role.CONTACT)
    add_message(s6, at(0, 0, 30, day=D + timedelta(days=1)), Direction.OUTBOUND, Role.AGENT)
    # S7: a session of the day before, still talking on D: its messages count on D, not the session.
    s7 = make_session(at(22, day=D - timedelta(days=1)), ChannelKind.SMS)
    add_message(s7, at(22, day=D - timedelta(days=1)), Direction.INBOUND, Role.CONTACT)
    add_message(s7, at(9), Direction.INBOUND, Role.CONTACT)
    add_message(s7, at(9, 0, 7), Direction.OUTBOUND, Role.STAFF)
    # A system message is neither a response nor a staff reply; an archive is none of the counts.
    add_message(s2, at(11, 0, 1), Direction.OUTBOUND, Role.SYSTEM)
    add_change(s1, at(16), SessionStatus.RESOLVED, SessionStatus.ARCHIVED, "system:sweep")
    first_responses = [30, 10, 5, 30, 40]  # S1 (staff, before the agent), S3, S4, S5, S6
    resolutions = [600, 100]  # S1 resolved; S3 closed first (the first of resolved or closed)
    return {
        "sessions_opened": 6,
        "messages_inbound": 1 + 1 + 2 + 2 + 1 + 1 + 1,  # S1..S6, and S7's message on D
        "messages_outbound": 2 + 1 + 2 + 2 + 2 + 0 + 1,  # S6's reply is on D+1; S2's system message counts
        "staff_replies": 2,  # S1 and S7
        "abandoned": 1,
        "reopened": 1,
        "merged": 1,
        "agent_only_sessions": 4,  # S3, S4, S5, S6 (S7 is D-1's, and staff answered it)
        "first_response": first_responses,
        "resolution": resolutions,
    }


def assert_figures(figures: Figures, expected: dict[str, object]) -> None:
    result = figures.as_dict()
    for name in (
        "sessions_opened",
        "messages_inbound",
        "messages_outbound",
        "staff_replies",
        "abandoned",
        "reopened",
        "merged",
        "agent_only_sessions",
    ):
        assert result[name] == expected[name], name
    for name, key in (("first_response", "first_response_seconds"), ("resolution", "resolution_seconds")):
        values = expected[name]
        assert isinstance(values, list)
        stats = result[key]
        assert stats["count"] == len(values), name
        assert stats["p50"] == pytest.approx(percentile_cont(values, 0.5)), name
        assert stats["p90"] == pytest.approx(percentile_cont(values, 0.9)), name
        assert stats["mean"] == pytest.approx(sum(values) / len(values)), name


def day_total(first: date, last: date, tz: ZoneInfo, selection: Selection = EVERYTHING) -> Figures:
    total = Figures()
    for figures in live_figures(first, last, tz, selection).values():
        total.add(figures)
    return total


def test_each_figure_is_what_the_definitions_give_by_hand():
    expected = generated_day()
    assert_figures(day_total(D, D, UTC_ZONE), expected)
    # The hand numbers once more, spelled out: 5, 10, 30, 30, 40 and 100, 600.
    stats = day_total(D, D, UTC_ZONE).as_dict()
    assert stats["first_response_seconds"] == {"p50": 30.0, "p90": 36.0, "mean": 23.0, "count": 5}
    assert stats["resolution_seconds"] == {"p50": 350.0, "p90": 550.0, "mean": 350.0, "count": 2}


def test_the_next_day_counts_the_late_reply_but_not_the_session():
    generated_day()
    next_day = day_total(D + timedelta(days=1), D + timedelta(days=1), UTC_ZONE).as_dict()
    assert next_day["messages_outbound"] == 1 and next_day["sessions_opened"] == 0
    assert next_day["first_response_seconds"]["count"] == 0


def test_channel_and_business_narrow_every_figure():
    generated_day()
    web = day_total(D, D, UTC_ZONE, Selection(kinds=(ChannelKind.WEB,))).as_dict()
    assert (web["sessions_opened"], web["messages_inbound"], web["merged"], web["agent_only_sessions"]) == (
        1,
        2,
        1,
        1,
    )
    assert web["first_response_seconds"]["p50"] == 5.0
    b1 = day_total(D, D, UTC_ZONE, Selection(business_id="B1")).as_dict()
    assert b1 == web
    nobody = day_total(D, D, UTC_ZONE, Selection(business_id="B1", empty=True)).as_dict()
    assert nobody["sessions_opened"] == 0 and nobody["first_response_seconds"]["p50"] is None


def test_the_merged_status_is_stored_as_written_since_no_check_constraint_refuses_it():
    """Issue 22's status, written by this test straight into the column (choices are not a constraint)."""
    session = make_session(at(9), ChannelKind.SMS)
    add_change(session, at(9, 1), SessionStatus.ACTIVE, SessionStatus.MERGED, "staff:ana")
    assert StatusChange.objects.get(session=session).to_status == "merged"


def test_a_range_across_a_dst_change_counts_each_session_on_its_local_day():
    """Paris moves from UTC+1 to UTC+2 at 02:00 on 2026-03-29: that day has 23 hours."""
    paris = ZoneInfo("Europe/Paris")
    early = make_session(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), ChannelKind.SMS)  # 00:30 CET on the 29th
    late = make_session(datetime(2026, 3, 29, 21, 30, tzinfo=UTC), ChannelKind.SMS)  # 23:30 CEST on the 29th
    make_session(datetime(2026, 3, 29, 22, 30, tzinfo=UTC), ChannelKind.SMS)  # 00:30 CEST on the 30th
    make_session(datetime(2026, 3, 27, 23, 30, tzinfo=UTC), ChannelKind.SMS)  # 00:30 CET on the 28th
    # Asked at 01:59 CET, answered at 03:01 CEST: two minutes, though the clocks moved an hour.
    add_message(early, datetime(2026, 3, 29, 0, 59, tzinfo=UTC), Direction.INBOUND, Role.CONTACT)
    add_message(early, datetime(2026, 3, 29, 1, 1, tzinfo=UTC), Direction.OUTBOUND, Role.AGENT)
    add_message(late, datetime(2026, 3, 29, 21, 30, tzinfo=UTC), Direction.INBOUND, Role.CONTACT)
    with time_machine.travel(datetime(2026, 4, 2, 12, tzinfo=UTC), tick=False):
        summary = summarise(date(2026, 3, 28), date(2026, 3, 30), paris, Selection()).as_dict()
    per_day = {row["day"]: row for row in summary["by_day"]}
    assert [per_day[d]["sessions_opened"] for d in ("2026-03-28", "2026-03-29", "2026-03-30")] == [1, 2, 1]
    assert [per_day[d]["messages_inbound"] for d in ("2026-03-28", "2026-03-29", "2026-03-30")] == [0, 2, 0]
    assert per_day["2026-03-29"]["first_response_seconds"]["p50"] == 120.0
    # In UTC the same rows fall on other days.
    utc = summarise(date(2026, 3, 28), date(2026, 3, 30), UTC_ZONE, Selection()).as_dict()
    assert [row["sessions_opened"] for row in utc["by_day"]] == [1, 2, 0]


def test_weeks_start_on_monday_and_a_range_cuts_them():
    make_session(datetime(2026, 11, 8, 12, tzinfo=UTC), ChannelKind.SMS)  # Sunday
    make_session(datetime(2026, 11, 9, 12, tzinfo=UTC), ChannelKind.SMS)  # Monday
    make_session(datetime(2026, 11, 15, 12, tzinfo=UTC), ChannelKind.SMS)  # Sunday
    make_session(datetime(2026, 11, 7, 12, tzinfo=UTC), ChannelKind.SMS)  # Saturday, before the range
    with time_machine.travel(datetime(2026, 11, 20, tzinfo=UTC), tick=False):
        summary = summarise(date(2026, 11, 8), date(2026, 11, 15), UTC_ZONE, Selection(), "week").as_dict()
    assert [(row["week"], row["sessions_opened"]) for row in summary["by_week"]] == [
        ("2026-11-02", 1),
        ("2026-11-09", 2),
    ]
    assert summary["sessions_opened"] == 3


def test_long_durations_are_counted_to_three_significant_digits_in_sql_as_in_python():
    values = [0, 7, 999, 1000, 1009, 12_345, 99_999, 604_800, 1_234_567_891]
    sql = BUCKET_SQL.format(x="v", exact=EXACT_BELOW)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT v, {sql} FROM unnest(%s::bigint[]) AS v ORDER BY v", [values])  # noqa: S608
        in_sql = dict(cursor.fetchall())
    assert in_sql == {value: bucket(value) for value in values}
    assert [bucket(v) for v in values] == [0, 7, 999, 1000, 1000, 12_300, 99_900, 604_000, 1_230_000_000]


@time_machine.travel(datetime(2026, 11, 13, 12, tzinfo=UTC), tick=False)
def test_the_rollup_of_past_days_equals_their_live_computation(settings):
    settings.TIME_ZONE = "UTC"
    expected = generated_day()
    result = rollup.refresh_rollups()
    assert result.computed == 4 and result.pending == 0  # D-1 .. D+2; today (D+3) stays live
    first, last = D - timedelta(days=1), D + timedelta(days=2)
    for selection in SELECTIONS:
        stored = rollup.rolled_up(first, last, UTC_ZONE, selection)
        assert sorted(stored) == [first + timedelta(days=i) for i in range(4)]
        for day, figures in stored.items():
            assert figures == day_total(day, day, UTC_ZONE, selection), (day, selection)
    summary = summarise(first, last + timedelta(days=1), UTC_ZONE, Selection())
    assert (summary.rollup_days, summary.live_days) == (4, 1)
    assert_figures(dict(summary.periods)[D], expected)


@time_machine.travel(datetime(2026, 11, 10, 23, 59, 59, tzinfo=UTC), tick=False)
def test_todays_provisional_rollup_equals_its_live_computation(settings):
    settings.TIME_ZONE = "UTC"
    expected = generated_day()  # D is today
    assert rollup.refresh_today()
    for selection in SELECTIONS:
        stored = rollup.rolled_up(D - timedelta(days=1), D, UTC_ZONE, selection)
        assert sorted(stored) == [D], selection  # the day before was never rolled up
        assert stored[D] == day_total(D, D, UTC_ZONE, selection), selection
    summary = summarise(D - timedelta(days=1), D, UTC_ZONE, Selection())
    assert (summary.rollup_days, summary.live_days) == (1, 1)
    assert_figures(dict(summary.periods)[D], expected)


def test_the_live_computation_runs_without_jit():
    # Inside the test's transaction, SET LOCAL lasts until it ends: what the queries ran with.
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "on"
        live_figures(D, D, UTC_ZONE, EVERYTHING)
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
