"""The what-if window report against a replay in Python of the same history."""

import itertools
import random
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sessions_app.ingest.window_report import GAP_BUCKETS, window_report
from sessions_app.models import Direction, Message, Role
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


def generated_history(seed: int):
    """A channel's inbound history from 12 contacts, scattered over several sessions each (some
    interleaved in time, as a client naming sessions makes them), with bursts and long silences;
    plus what the report must not read: outbound messages, another channel, messages outside the
    period, and a session without a contact."""
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
