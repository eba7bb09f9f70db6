"""The staff pages in a real browser against the running app (pytest-django's live server)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import expect

from sessions_app.models import ChannelKind, Session, SessionStatus, StatusChange
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory, UserFactory
from tests.twilio_helpers import OUR_NUMBER, SMS_URL, WHATSAPP_URL, sign, sms_params
from tests.ui.browser import ARTIFACTS, launch_browser

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct horse battery staple"
LIVE = 20_000  # ms: several polling intervals


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(LIVE)
    yield page
    context.close()


@pytest.fixture
def app(live_server, settings):
    # Webhook signatures are checked against the public URL; here that is the live server's.
    settings.PUBLIC_BASE_URL = live_server.url
    UserFactory(username="staff", is_staff=True)
    return live_server.url


def post_twilio_sms(base_url: str, from_phone: str, body: str, *, whatsapp: bool = False) -> None:
    if whatsapp:
        params = sms_params(f"whatsapp:{from_phone}", body, To=f"whatsapp:{OUR_NUMBER}")
        url = base_url + WHATSAPP_URL
    else:
        params = sms_params(from_phone, body)
        url = base_url + SMS_URL
    response = requests.post(url, data=params, headers={"X-Twilio-Signature": sign(url, params)}, timeout=10)
    assert response.status_code == 200, response.text


def sign_in(page, app: str, path: str = "/sessions/") -> None:
    page.goto(app + path)
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/sessions/"))


def rows(page):
    return page.locator("#session-rows tr")


def test_staff_browse_filter_search_open_watch_and_close(page, app):
    sms_channel = ChannelFactory(kind=ChannelKind.SMS, address="+15005550006")
    wa_channel = ChannelFactory(kind=ChannelKind.WHATSAPP, address="+15005550006")
    grace = ContactFactory(phone="+15550004242", display_name="Grace Hopper")
    parcel = SessionFactory(channel=sms_channel, contact=grace, title="SMS from +15550004242")
    MessageFactory(session=parcel, content="Where is my parcel?")
    for i in range(3):
        SessionFactory(channel=wa_channel, title=f"WhatsApp from +1555000010{i}")
    SessionFactory(channel=wa_channel, title="WhatsApp closed one", status=SessionStatus.CLOSED)

    sign_in(page, app)
    page.evaluate("window.__noReload = true")
    assert rows(page).count() == 5

    # A message from a new number arrives by webhook and shows up without a reload.
    post_twilio_sms(app, "+15550007777", "Hi, anyone there?")
    page.locator("#session-rows").get_by_text("SMS from +15550007777").wait_for()
    assert page.evaluate("window.__noReload") is True
    assert rows(page).count() == 6

    # Tabs.
    page.get_by_role("navigation", name="Channels").get_by_role("link", name=re.compile("^WhatsApp")).click()
    page.wait_for_url(re.compile(r"channel=whatsapp"))
    assert rows(page).count() == 4
    assert page.locator('a[aria-current="page"]').inner_text().startswith("WhatsApp")

    # Status filter (kept with the tab in the URL).
    page.get_by_label("Closed").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r"status=closed"))
    assert "channel=whatsapp" in page.url
    assert rows(page).count() == 1
    assert "WhatsApp closed one" in rows(page).first.inner_text()

    # Search by message text, from all channels.
    page.goto(app + "/sessions/")
    page.get_by_label("Search").fill("parcel")
    page.get_by_label("Search").press("Enter")
    page.wait_for_url(re.compile(r"q=parcel"))
    assert rows(page).count() == 1
    page.goto(app + "/sessions/")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "sessions-list.png"), full_page=True)

    # Open the session and watch the contact's next message arrive live.
    page.get_by_role("link", name="SMS from +15550004242").click()
    page.wait_for_url(re.compile(str(parcel.pk)))
    page.get_by_text("Where is my parcel?").wait_for()
    page.evaluate("window.__noReload = true")
    post_twilio_sms(app, "+15550004242", "Tracking number is 1Z999")
    page.locator("#thread").get_by_text("Tracking number is 1Z999").wait_for()
    assert page.evaluate("window.__noReload") is True
    # The count comes from the same poll (the agent's reply may follow in a later one).
    expect(page.locator("#message-count")).not_to_have_text("0")
    page.screenshot(path=str(ARTIFACTS / "session-page.png"), full_page=True)

    # Close it.
    page.get_by_role("button", name="Close").click()
    page.get_by_text("Session is now closed.").wait_for()
    assert page.locator("#session-status").inner_text() == "Closed"
    parcel.refresh_from_db()
    assert parcel.status == SessionStatus.CLOSED
    assert StatusChange.objects.get(session=parcel).actor == "staff:staff"


def test_a_staff_reply_from_the_keyboard_and_a_phone_sized_screen(browser, app):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(LIVE)
    try:
        session = SessionFactory(title="SMS from +15550001234", last_activity_at=timezone.now())
        MessageFactory(session=session, content="Can I change my booking?")
        sign_in(page, app)
        page.screenshot(path=str(ARTIFACTS / "sessions-list-phone.png"), full_page=True)
        page.get_by_role("link", name="SMS from +15550001234").click()
        page.get_by_label("Reply as staff").fill("Yes, tell me the new date.")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Send reply"
        page.keyboard.press("Enter")
        page.get_by_text("Reply stored; it is sent to the contact's phone.").wait_for()
        page.locator("#thread").get_by_text("Yes, tell me the new date.").wait_for()
        page.screenshot(path=str(ARTIFACTS / "session-page-phone.png"), full_page=True)
        stored = Session.objects.get(pk=session.pk).messages.order_by("created_at").last()
        assert (stored.role, stored.direction, stored.content) == (
            "staff",
            "outbound",
            "Yes, tell me the new date.",
        )
    finally:
        context.close()


def test_live_rows_keep_the_filters_and_the_readers_scroll_position(page, app):
    sms_channel = ChannelFactory(kind=ChannelKind.SMS, address=OUR_NUMBER)
    now = timezone.now()
    for i in range(40):
        SessionFactory(
            channel=sms_channel, title=f"Older SMS {i}", last_activity_at=now - timedelta(minutes=i + 1)
        )
    sign_in(page, app, "/sessions/?channel=sms&status=active")
    page.wait_for_url(re.compile(r"channel=sms&status=active"))
    assert rows(page).count() == 40
    page.evaluate("window.__noReload = true")
    reading = page.locator("#session-rows tr").nth(25)
    reading.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, 200)")
    reading_id = reading.get_attribute("data-session-id")
    before = page.locator(f'tr[data-session-id="{reading_id}"]').bounding_box()["y"]

    post_twilio_sms(app, "+15550008888", "Hello on WhatsApp", whatsapp=True)
    post_twilio_sms(app, "+15550009999", "Hello on SMS")
    page.locator("#session-rows").get_by_text("SMS from +15550009999").wait_for(state="attached")
    # The scroll correction runs in the same script task that inserts the row, so it is done by now.

    assert page.evaluate("window.__noReload") is True
    assert "channel=sms&status=active" in page.url
    assert rows(page).count() == 41
    assert page.locator("#session-rows").get_by_text("WhatsApp from +15550008888").count() == 0
    after = page.locator(f'tr[data-session-id="{reading_id}"]').bounding_box()["y"]
    assert abs(after - before) < 2, (before, after)


def test_the_empty_list_explains_how_to_connect_twilio_and_fills_in_live(page, app):
    sign_in(page, app)
    help_box = page.locator("#no-sessions")
    expect(help_box).to_contain_text(f"{app}/webhooks/twilio/sms/")
    expect(help_box).to_contain_text("python3 run.py manage send_test_message")
    page.screenshot(path=str(ARTIFACTS / "sessions-list-empty.png"), full_page=True)
    post_twilio_sms(app, "+15550001000", "First ever message")
    page.locator("#session-rows").get_by_text("SMS from +15550001000").wait_for()
    expect(help_box).to_be_hidden()
