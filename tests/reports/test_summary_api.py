"""GET /api/v1/reports/summary/: parameters, scoping, and the rollup behind it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app.models import ChannelKind, Direction, Role
from sessions_app.reports import rollup
from sessions_app.reports.api import FiguresShape
from sessions_app.reports.metrics import Figures
from tests.api.conftest import token_for
from tests.reports.builders import add_message, make_session

pytestmark = pytest.mark.django_db

URL = "/api/v1/reports/summary/"
NOW = datetime(2026, 11, 13, 12, tzinfo=UTC)


@pytest.fixture
def sessions(db):
    """Business B1: two SMS sessions on the 10th; business B2: one web session on the 11th; and one of
    alice's (owner) on the 12th."""
    for hour in (9, 10):
        session = make_session(datetime(2026, 11, 10, hour, tzinfo=UTC), ChannelKind.SMS, business_id="B1")
        add_message(session, datetime(2026, 11, 10, hour, tzinfo=UTC), Direction.INBOUND, Role.CONTACT)
        add_message(session, datetime(2026, 11, 10, hour, 0, 20, tzinfo=UTC), Direction.OUTBOUND, Role.AGENT)
    make_session(datetime(2026, 11, 11, 9, tzinfo=UTC), ChannelKind.WEB, business_id="B2")


def get(api, auth, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return api.get(f"{URL}?{query}", auth=auth)


@time_machine.travel(NOW, tick=False)
def test_it_answers_every_figure_per_day_for_staff(api, service_key, sessions):
    response = get(api, service_key, since="2026-11-10", until="2026-11-12")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sessions_opened"] == 3 and body["messages_inbound"] == 2 and body["messages_outbound"] == 2
    assert body["first_response_seconds"] == {"p50": 20.0, "p90": 20.0, "mean": 20.0, "count": 2}
    assert body["agent_only_sessions"] == 2 and body["staff_replies"] == 0
    assert [(row["day"], row["sessions_opened"]) for row in body["by_day"]] == [
        ("2026-11-10", 2),
        ("2026-11-11", 1),
        ("2026-11-12", 0),
    ]
    assert body["time_zone"] == "UTC" and body["computed"] == {"rollup_days": 0, "live_days": 3}


@time_machine.travel(NOW, tick=False)
def test_past_days_come_from_the_rollup_once_it_ran_and_today_stays_live(api, service_key, sessions):
    before = get(api, service_key, since="2026-11-10", until="2026-11-13").json()
    rollup.refresh_rollups()
    after = get(api, service_key, since="2026-11-10", until="2026-11-13").json()
    assert after["computed"] == {"rollup_days": 3, "live_days": 1}
    assert {k: v for k, v in after.items() if k != "computed"} == {
        k: v for k, v in before.items() if k != "computed"
    }
    # Another time zone than TIME_ZONE is computed live.
    paris = get(api, service_key, since="2026-11-10", until="2026-11-13", tz="Europe/Paris").json()
    assert paris["computed"] == {"rollup_days": 0, "live_days": 4} and paris["sessions_opened"] == 3


@time_machine.travel(NOW, tick=False)
def test_channel_and_business_filter_and_weeks_group(api, service_key, sessions):
    sms = get(api, service_key, since="2026-11-09", until="2026-11-12", channel="sms").json()
    assert sms["sessions_opened"] == 2
    b2 = get(api, service_key, since="2026-11-09", until="2026-11-12", business_id="B2").json()
    assert b2["sessions_opened"] == 1
    weeks = get(api, service_key, since="2026-11-01", until="2026-11-12", group_by="week").json()
    assert [(row["week"], row["sessions_opened"]) for row in weeks["by_week"]] == [
        ("2026-10-26", 0),
        ("2026-11-02", 0),
        ("2026-11-09", 3),
    ]
    assert "by_day" not in weeks


@time_machine.travel(NOW, tick=False)
def test_a_business_key_sees_its_business_only(api, business_key, sessions):
    rollup.refresh_rollups()  # the rollup is per business too
    own = get(api, business_key, since="2026-11-09", until="2026-11-12").json()
    # The 9th is before the first session: never rolled up, so computed live (as nothing).
    assert own["sessions_opened"] == 2 and own["computed"] == {"rollup_days": 3, "live_days": 1}
    other = get(api, business_key, since="2026-11-09", until="2026-11-12", business_id="B2").json()
    assert other["sessions_opened"] == 0 and other["messages_inbound"] == 0


def test_an_end_user_sees_their_own_sessions_only(api, alice, sessions):
    make_session(datetime(2026, 11, 12, 9, tzinfo=UTC), ChannelKind.API, owner=alice)
    with time_machine.travel(NOW, tick=False):
        rollup.refresh_rollups()
        token = token_for(api, "alice")  # issued in the travelled time, or it is not valid yet
        body = get(api, token, since="2026-11-09", until="2026-11-12").json()
    assert body["sessions_opened"] == 1 and body["computed"]["rollup_days"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-13-01"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"since": "2026-11-12", "until": "2026-11-10"}, "since"),
        ({"since": "2020-01-01", "until": "2026-11-10"}, "since"),
        ({"channel": "fax"}, "channel"),
        ({"group_by": "month"}, "group_by"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "../etc/passwd"}, "tz"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(api, service_key, params, field):
    response = get(api, service_key, **params)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_it_needs_credentials(api, db):
    assert api.get(URL).status_code == 401


@time_machine.travel(NOW, tick=False)
def test_a_long_range_costs_no_more_queries_than_a_short_one_once_rolled_up(api, service_key, sessions):
    make_session(datetime(2026, 8, 16, 9, tzinfo=UTC), ChannelKind.SMS)  # the rollup starts here
    rollup.refresh_rollups()
    get(api, service_key)  # the key's first use is recorded once, not in every request
    counts = []
    for since in ("2026-11-10", "2026-08-16"):  # 4 days, 90 days
        with CaptureQueriesContext(connection) as queries:
            assert get(api, service_key, since=since, until="2026-11-13").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_todays_live_figures_are_kept_for_a_minute(api, service_key, sessions, settings):
    # A local cache, so the expiry follows the travelled clock (a Redis TTL follows the real one).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    assert settings.REPORTS_TODAY_MAX_AGE == 60
    with time_machine.travel(NOW, tick=False) as traveller:
        assert get(api, service_key, since="2026-11-13", until="2026-11-13").json()["sessions_opened"] == 0
        make_session(NOW - timedelta(hours=1), ChannelKind.SMS)
        assert get(api, service_key, since="2026-11-13", until="2026-11-13").json()["sessions_opened"] == 0
        traveller.shift(settings.REPORTS_TODAY_MAX_AGE + 1)
        assert get(api, service_key, since="2026-11-13", until="2026-11-13").json()["sessions_opened"] == 1


def test_today_comes_from_its_provisional_rollup_while_it_is_recent(api, service_key, sessions, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()  # one local memory for every test of the process
    today = make_session(NOW - timedelta(hours=2), ChannelKind.SMS, business_id="B1")
    add_message(today, NOW - timedelta(hours=2), Direction.INBOUND, Role.CONTACT)
    add_message(today, NOW - timedelta(hours=2) + timedelta(seconds=45), Direction.OUTBOUND, Role.STAFF)
    with time_machine.travel(NOW, tick=False) as traveller:
        live = get(api, service_key, since="2026-11-10", until="2026-11-13").json()
        assert live["computed"] == {"rollup_days": 0, "live_days": 4}
        rollup.refresh_rollups()
        assert rollup.refresh_today()
        stored = get(api, service_key, since="2026-11-10", until="2026-11-13").json()
        assert stored["computed"] == {"rollup_days": 4, "live_days": 0}
        assert {k: v for k, v in stored.items() if k != "computed"} == {
            k: v for k, v in live.items() if k != "computed"
        }
        assert stored["sessions_opened"] == 4 and stored["staff_replies"] == 1
        # Selections the rollup is kept for read it too (a channel, a business).
        b1 = get(api, service_key, since="2026-11-13", until="2026-11-13", business_id="B1").json()
        assert b1["computed"] == {"rollup_days": 1, "live_days": 0} and b1["sessions_opened"] == 1
        # A session since is in its figures only once it is recomputed, or once they are too old to read.
        make_session(NOW - timedelta(minutes=1), ChannelKind.SMS)
        traveller.shift(settings.REPORTS_TODAY_MAX_AGE)
        assert get(api, service_key, since="2026-11-13", until="2026-11-13").json()["sessions_opened"] == 1
        traveller.shift(1)
        late = get(api, service_key, since="2026-11-13", until="2026-11-13").json()
        assert late["computed"] == {"rollup_days": 0, "live_days": 1} and late["sessions_opened"] == 2
        assert rollup.refresh_today()
        again = get(api, service_key, since="2026-11-13", until="2026-11-13").json()
        assert again["computed"] == {"rollup_days": 1, "live_days": 0} and again["sessions_opened"] == 2
        # Another time zone is computed live, today too.
        paris = get(api, service_key, since="2026-11-13", until="2026-11-13", tz="Europe/Paris").json()
        assert paris["computed"] == {"rollup_days": 0, "live_days": 1}


def test_the_documented_shape_has_exactly_the_figures():
    assert set(FiguresShape().fields) == set(Figures().as_dict())
