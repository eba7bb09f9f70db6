"""Staff pages follow the real-time socket: with polling slowed to ten minutes, a webhook's message
still appears within seconds, so it can only have come over the WebSocket."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.factories import UserFactory
from tests.servers import AsgiServer
from tests.twilio_helpers import SMS_URL, sign, sms_params
from tests.ui.browser import ARTIFACTS, launch_browser

pytestmark = pytest.mark.django_db(transaction=True)
PUSHED = 8_000  # ms; polling would take 600,000


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


@pytest.fixture
def server():
    server = AsgiServer(STAFF_UI_POLL_MS="600000")
    server.env["PUBLIC_BASE_URL"] = server.url
    server.start()
    yield server
    server.stop()


def post_sms(server: AsgiServer, body: str) -> None:
    url = server.url + SMS_URL
    params = sms_params("+15550009999", body)
    response = requests.post(url, data=params, headers={"X-Twilio-Signature": sign(url, params)}, timeout=10)
    assert response.status_code == 200, response.text


def test_the_list_and_the_thread_update_over_the_socket(browser, server):
    UserFactory(username="staff", is_staff=True)
    page = browser.new_page()
    page.set_default_timeout(PUSHED)
    page.goto(server.url + "/sessions/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/sessions/$"))
    expect(page.locator("#sessions-region")).to_have_attribute("data-live", "socket")

    post_sms(server, "pushed to the list")
    row = page.locator("#session-rows tr").filter(has_text="+15550009999")
    expect(row).to_have_count(1)

    row.get_by_role("link").first.click()
    expect(page.locator("#thread")).to_have_attribute("data-live", "socket")
    post_sms(server, "pushed to the thread")
    expect(page.locator("#thread")).to_contain_text("pushed to the thread")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "session-live-socket.png"), full_page=True)
    page.close()
