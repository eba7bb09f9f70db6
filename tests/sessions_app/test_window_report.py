"""The what-if window report against a replay in Python of the same history."""

import itertools
import random
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from sessions_app.ingest.window_report import GAP_BUCKETS, ReportQuery, roll_up, rolled_days, window_report
from sessions_app.models import Direction, Message, Role, Session, WindowRollupState
from sessions_app.tasks import roll_up_windows
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)
SINCE, UNTIL = START + timedelta(days=1), START + timedelta(days=20)


def replay(times_by_contact: dict[int, list[datetime]], windows, since, until):
    """Sessions per window and gaps per bucket, the slow way."""
    gaps: list[float] = []
    contacts = 0
    for times in times_by_contact.values():
        inside = sorted(t for t in times if since <= t < until)
        if inside:
            contacts += 1
        gaps += [(b - a).total_seconds() for a, b in itertools.pairwise(inside)]
    sessions = {w: contacts + sum(1 for g in gaps if g > w) for w in windows}
    bounds = [*GAP_BUCKETS, None]
    buckets = []
    low = None
    for upper in bounds:
        buckets.append(sum(1 for g in gaps if (low is None or g > low) and (upper is None or g <= upper)))
        low = upper
    return sessions, buckets


def generated_history(seed: int, *, before: datetime | None = None):
    """A channel's inbound history from 12 contacts, scattered over several sessions each (some
    interleaved in time, as a client naming sessions makes them), with bursts and long silences;
    plus what the report must not read: outbound messages, another channel, messages outside the
    period, and a session without a contact. `before`: no message from then on."""
    rng = random.Random(seed)
    channel, elsewhere = ChannelFactory(), ChannelFactory(address="+15005550007")
    times: dict[int, list[datetime]] = {}
    for _ in range(12):
        contact = ContactFactory()
        sessions = [SessionFactory(channel=channel, contact=contact) for _ in range(rng.randint(1, 4))]
        t = START + timedelta(seconds=rng.randint(0, 3 * 86400))
        for _ in range(rng.randint(5, 40)):
            t += timedelta(
                seconds=rng.choice(
                    [
                        rng.uniform(0, 20),
                        rng.uniform(20, 400),
                        rng.choice([60, 300, 900]),  # exactly a window: not a new session
                        rng.uniform(400, 4000),
                        rng.uniform(4000, 10 * 86400),
                    ]
                )
            )
            if before is not None and t >= before:
                break  # never after the sessions' last activity (ingest keeps it so)
            MessageFactory(session=rng.choice(sessions), created_at=t)
            times.setdefault(contact.pk, []).append(t)
            if rng.random() < 0.5:
                MessageFactory(
                    session=sessions[0],
                    direction=Direction.OUTBOUND,
                    role=Role.AGENT,
                    created_at=t + timedelta(seconds=1),
                )
        MessageFactory(session=SessionFactory(channel=elsewhere, contact=contact), created_at=t)
    no_contact = SessionFactory(channel=channel, contact=None, title="no contact")
    MessageFactory(session=no_contact, created_at=SINCE)
    return channel, times


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_counts_match_a_replay_in_python_of_generated_history(seed):
    channel, times = generated_history(seed)
    windows = [7, 60, 299, 300, 301, 900, 3600, 86400]
    report = window_report(channel, windows, SINCE, UNTIL)
    sessions, buckets = replay(times, windows, SINCE, UNTIL)
    assert {w.seconds: w.sessions for w in report.windows} == sessions
    assert [g.count for g in report.gaps] == buckets
    assert [g.upper_seconds for g in report.gaps] == [*GAP_BUCKETS, None]
    inbound = Message.objects.filter(
        session__channel=channel,
        session__contact__isnull=False,
        direction=Direction.INBOUND,
        created_at__gte=SINCE,
        created_at__lt=UNTIL,
    ).count()
    assert report.messages == inbound == sum(buckets) + report.contacts


def test_a_gap_of_exactly_the_window_joins_and_one_microsecond_more_does_not():
    channel = ChannelFactory()
    session = SessionFactory(channel=channel)
    for t in (SINCE, SINCE + timedelta(seconds=300), SINCE + timedelta(seconds=600, microseconds=1)):
        MessageFactory(session=session, created_at=t)
    report = window_report(channel, [300], SINCE, UNTIL)
    assert report.as_dict()["windows"] == [{"seconds": 300, "sessions": 2}]
    assert report.sessions_at(300) == 2
    counts = {g.upper_seconds: g.count for g in report.gaps}
    assert counts[300] == 1 and counts[600] == 1


def test_an_empty_channel_reports_no_sessions_and_empty_buckets():
    report = window_report(ChannelFactory(), [60, 300], SINCE, UNTIL).as_dict()
    assert report["windows"] == [{"seconds": 60, "sessions": 0}, {"seconds": 300, "sessions": 0}]
    assert all(g["count"] == 0 for g in report["gaps"])
    assert set(report) == {"windows", "gaps"}


def test_the_command_prints_the_report_as_the_api_shapes_it():
    channel = ChannelFactory()
    session = SessionFactory(channel=channel)
    MessageFactory(session=session, created_at=SINCE)
    MessageFactory(session=session, created_at=SINCE + timedelta(seconds=120))
    out = StringIO()
    call_command(
        "window_report",
        "--channel",
        str(channel.pk),
        "--windows",
        "60,300",
        "--since",
        SINCE.isoformat(),
        "--until",
        UNTIL.isoformat(),
        stdout=out,
    )
    text = out.getvalue()
    assert '"windows": [{"seconds": 60, "sessions": 2}, {"seconds": 300, "sessions": 1}]' in text
    assert '{"upper_seconds": 120, "count": 1}' in text


def test_the_command_refuses_an_unknown_channel_and_bad_windows():
    with pytest.raises(CommandError, match="No channel 999999"):
        call_command("window_report", "--channel", "999999", stdout=StringIO())
    channel = ChannelFactory()
    with pytest.raises(CommandError, match="windows"):
        call_command("window_report", "--channel", str(channel.pk), "--windows", "abc", stdout=StringIO())


# --- The daily rollup ------------------------------------------------------------------------------------

NOW = START + timedelta(days=25, hours=13, minutes=7)


def history_up_to_now(seed: int):
    """As `generated_history`, written at NOW (so each session's last activity is after its messages,
    as ingest keeps it), with messages up to NOW: finished days and a part of today."""
    with time_machine.travel(NOW, tick=False):
        channel, times = generated_history(seed, before=NOW.replace(hour=0, minute=0))
        rng = random.Random(seed)
        for contact_id in list(times)[:6]:  # some contacts write today too
            session = SessionFactory(channel=channel, contact_id=contact_id)
            for minutes in sorted(rng.uniform(0, 13 * 60) for _ in range(4)):
                t = NOW.replace(hour=0, minute=0, second=0) + timedelta(minutes=minutes)
                MessageFactory(session=session, created_at=t)
                times[contact_id].append(t)
    return channel, times


WINDOWS = [7, 60, 299, 300, 301, 900, 3600, 86400]


def assert_matches_replay(channel, times, since, until, *, rolled: bool) -> None:
    assert (rolled_days(channel, since, until) is not None) is rolled
    report = window_report(channel, WINDOWS, since, until)
    sessions, buckets = replay(times, WINDOWS, since, until)
    assert {w.seconds: w.sessions for w in report.windows} == sessions
    assert [g.count for g in report.gaps] == buckets


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_the_rollup_gives_the_counts_the_messages_give(seed):
    channel, times = history_up_to_now(seed)
    assert roll_up(channel, now=NOW) > 0
    midnight = datetime(2026, 1, 3, tzinfo=UTC)
    # The finished days from the rollup, today from the messages.
    assert_matches_replay(channel, times, midnight, NOW, rolled=True)
    # A period ending inside the rolled days: the rest of its last day from the messages.
    assert_matches_replay(channel, times, midnight, datetime(2026, 1, 9, 5, 30, tzinfo=UTC), rolled=True)
    # Not from a midnight: the messages alone, the same counts.
    assert_matches_replay(channel, times, midnight + timedelta(hours=3), NOW, rolled=False)
    # The default period starts at a midnight, so the rollup answers it.
    query = ReportQuery.parse(None, None, None, now=NOW)
    assert rolled_days(channel, query.since, query.until) is not None


def test_a_deleted_session_sends_reports_to_the_messages_until_the_next_roll():
    channel, times = history_up_to_now(7)
    roll_up(channel, now=NOW)
    since = datetime(2026, 1, 2, tzinfo=UTC)
    session = Session.objects.filter(channel=channel, messages__created_at__gte=since).distinct().first()
    gone = set(session.messages.filter(direction=Direction.INBOUND).values_list("created_at", flat=True))
    session.delete()  # as an erasure or a purge deletes it
    times = {contact: [t for t in ts if t not in gone] for contact, ts in times.items()}
    state = WindowRollupState.objects.get(channel=channel)
    assert state.dirty_before is not None and state.dirty_before >= since
    assert_matches_replay(channel, times, since, NOW, rolled=False)
    roll_up(channel, now=NOW)  # rebuilt
    assert_matches_replay(channel, times, since, NOW, rolled=True)


def test_the_next_roll_adds_only_the_days_finished_since():
    channel, times = history_up_to_now(8)
    roll_up(channel, now=NOW)
    assert roll_up(channel, now=NOW) == 0  # nothing new
    tomorrow = NOW + timedelta(days=1)
    with time_machine.travel(tomorrow, tick=False):
        contact_id = next(iter(times))
        session = SessionFactory(channel=channel, contact_id=contact_id)
        for hours in (1, 1.01, 5):
            t = tomorrow.replace(hour=0, minute=0) + timedelta(hours=hours)
            MessageFactory(session=session, created_at=t)
            times[contact_id].append(t)
        assert roll_up_windows() > 0  # the beat task: today (NOW's day) is finished now
    assert WindowRollupState.objects.get(channel=channel).rolled_until == tomorrow.date()
    later = tomorrow + timedelta(hours=6)
    assert_matches_replay(channel, times, datetime(2026, 1, 2, tzinfo=UTC), later, rolled=True)


def test_the_command_rolls_up_first_when_asked_and_prints_the_same_counts():
    channel, times = history_up_to_now(9)
    since = datetime(2026, 1, 2, tzinfo=UTC)
    args = ["--channel", str(channel.pk), "--windows", "300", "--since", since.isoformat()]
    args += ["--until", NOW.isoformat()]
    live, rolled, err = StringIO(), StringIO(), StringIO()
    call_command("window_report", *args, stdout=live)
    call_command("window_report", *args, "--roll-up", stdout=rolled, stderr=err)
    assert "rolled up:" in err.getvalue()
    assert rolled_days(channel, since, NOW) is not None
    assert live.getvalue() == rolled.getvalue()
    sessions, _ = replay(times, [300], since, NOW)
    assert f'"windows": [{{"seconds": 300, "sessions": {sessions[300]}}}]' in rolled.getvalue()
