"""The reports page in a real browser (Chromium through Playwright, as tests/ui/test_browser.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.models import ChannelKind, Direction, Role, SessionStatus
from tests.factories import UserFactory
from tests.reports.builders import add_change, add_message, make_session
from tests.ui.browser import ARTIFACTS, launch_browser
from tests.ui.test_browser import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_staff_pick_a_range_and_a_channel_read_the_charts_and_download_the_csv(page, live_server):
    UserFactory(username="staff", is_staff=True)
    # Noon yesterday, so that an hour later is still yesterday whatever the time of the run: at
    # 23:30 "now minus a day, plus an hour" fell on today, where no session opened, and the
    # abandoned-share chart came out empty.
    yesterday = (timezone.localtime() - timedelta(days=1)).replace(hour=12, minute=0, second=0)
    for kind in (ChannelKind.SMS, ChannelKind.SMS, ChannelKind.WHATSAPP):
        session = make_session(yesterday, kind, title=f"{kind} session")
        add_message(session, yesterday, Direction.INBOUND, Role.CONTACT)
        add_message(session, yesterday + timedelta(seconds=30), Direction.OUTBOUND, Role.AGENT)
    add_change(session, yesterday + timedelta(hours=1), SessionStatus.ACTIVE, SessionStatus.ABANDONED, "x")

    sign_in(page, live_server.url)
    page.get_by_role("link", name="Reports").click()
    page.wait_for_url(re.compile(r"/sessions/reports/"))
    expect_rows = page.locator("#headline tr")
    assert "3" in expect_rows.filter(has_text="Sessions opened").inner_text()
    assert page.locator("figure.chart svg").count() == 3
    assert page.locator("figure.chart rect").count() > 0

    page.get_by_label("Channel", exact=True).select_option("sms")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"channel=sms"))
    assert "2" in page.locator("#headline tr").filter(has_text="Sessions opened").inner_text()
    # The first-response table says both were answered within a minute.
    assert "2" in page.locator("#chart-2 tbody tr").first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download these sessions as CSV").click()
    text = download.value.path().read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("id,channel,contact phone,contact name,")
    assert text.count("sms session") == 2 and "whatsapp session" not in text
