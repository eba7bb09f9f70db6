"""The staff reports page (/sessions/reports/) and the sessions list's Export link."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from sessions_app.models import ChannelKind, Direction, Role, SessionStatus
from tests.reports.builders import add_change, add_message, make_session

REPORTS = "/sessions/reports/"
NOW = datetime(2026, 11, 13, 12, tzinfo=UTC)


def seed() -> None:
    for hour, kind in ((9, ChannelKind.SMS), (10, ChannelKind.SMS), (11, ChannelKind.WHATSAPP)):
        session = make_session(datetime(2026, 11, 10, hour, tzinfo=UTC), kind, title=f"{kind} at {hour}")
        add_message(session, session.created_at, Direction.INBOUND, Role.CONTACT)
        add_message(session, session.created_at + timedelta(seconds=90), Direction.OUTBOUND, Role.AGENT)
    add_change(
        session, datetime(2026, 11, 10, 12, tzinfo=UTC), SessionStatus.ACTIVE, SessionStatus.ABANDONED, "x"
    )


@pytest.mark.django_db
def test_the_page_needs_staff(client):
    assert client.get(REPORTS).status_code == 302


@pytest.mark.django_db
def test_the_page_shows_each_chart_with_its_numbers_for_the_range_and_channel(staff_client):
    seed()
    with time_machine.travel(NOW, tick=False):
        page = staff_client.get(REPORTS, {"from": "2026-11-09", "to": "2026-11-12"})
        sms = staff_client.get(REPORTS, {"from": "2026-11-09", "to": "2026-11-12", "channel": "sms"})
    html = page.content.decode()
    assert page.status_code == 200 and html.count("<svg") == 3 and html.count("<table") == 4
    assert page.context["total"].sessions_opened == 3 and sms.context["total"].sessions_opened == 2
    charts = page.context["charts"]
    assert charts[0].rows[1] == ["2026-11-10", "3", "3", "3"]  # sessions opened, messages in, out
    assert charts[1].rows[1] == ["1-5 min", "3"]  # every first response took 90 s
    assert charts[2].rows[1] == ["2026-11-10", "33.3%", "0%"]  # one abandoned of three
    assert 'value="sms" selected' in sms.content.decode()


@pytest.mark.django_db
def test_a_bad_range_is_named_and_replaced(staff_client):
    with time_machine.travel(NOW, tick=False):
        page = staff_client.get(REPORTS, {"from": "yesterday", "channel": "fax"})
    problems = page.context["filters"].problems
    assert len(problems) == 2 and page.context["filters"].first == NOW.date() - timedelta(days=29)


@pytest.mark.django_db
def test_the_download_link_exports_the_sessions_of_the_range_and_channel(staff_client):
    seed()
    make_session(datetime(2026, 11, 12, 9, tzinfo=UTC), ChannelKind.SMS, title="outside")
    with time_machine.travel(NOW, tick=False):
        page = staff_client.get(REPORTS, {"from": "2026-11-09", "to": "2026-11-11", "channel": "sms"})
    response = staff_client.get(page.context["export_url"])
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["title"] for row in rows] == ["sms at 9", "sms at 10"]


@pytest.mark.django_db
def test_the_sessions_lists_export_link_carries_its_filters(staff_client):
    seed()
    page = staff_client.get(
        "/sessions/", {"channel": "sms", "status": "active", "from": "2026-11-10", "to": "2026-11-10"}
    )
    link = page.context["export_url"]
    assert re.search(r'id="export-link"', page.content.decode())
    response = staff_client.get(link)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["title"] for row in rows] == ["sms at 9", "sms at 10"]
    # The day ends at the next midnight, excluded, as in the list.
    assert (
        timezone.get_current_timezone_name() == "UTC"
        and "created_before=2026-11-10T23%3A59%3A59.999999" in link
    )
