from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app.models import ChannelKind, Message, Role, Session, SessionStatus, StatusChange
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db
LIST = "/sessions/"


def session_of(kind: str = ChannelKind.SMS, **fields) -> Session:
    channel = ChannelFactory(kind=kind, address="" if kind in ("web", "api") else "+15005550006")
    return SessionFactory(channel=channel, **fields)


def page_ids(response) -> list:
    return [s.pk for s in response.context["page"].sessions]


# --- access --------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login_with_next(client):
    response = client.get(LIST, {"channel": "sms"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/sessions/%3Fchannel%3Dsms"


def test_signed_in_people_who_are_not_staff_get_403(client):
    client.force_login(UserFactory(username="visitor", is_staff=False))
    denied = client.get(LIST)
    assert denied.status_code == 403
    assert "signed in as <strong>visitor</strong>, which is not a staff account" in denied.content.decode()
    session = SessionFactory()
    assert client.get(f"{LIST}{session.pk}/").status_code == 403
    assert client.post(f"{LIST}{session.pk}/status/", {"to": "closed"}).status_code == 403
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


def test_the_root_redirects_to_the_sessions_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/sessions/"


def test_the_login_page_signs_staff_in_and_returns_to_next(client, staff_user):
    page = client.get("/accounts/login/?next=/sessions/")
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode() and 'name="password"' in page.content.decode()
    response = client.post(
        "/accounts/login/",
        {"username": "staff", "password": "correct horse battery staple", "next": "/sessions/"},
    )
    assert response.status_code == 302 and response["Location"] == "/sessions/"


# --- the list ------------------------------------------------------------------------------------


def test_rows_show_title_contact_channel_status_count_and_exact_time(staff_client):
    contact = ContactFactory(phone="+15550001111", display_name="Ada Lovelace")
    session = session_of(title="SMS from +15550001111", contact=contact, message_count=7)
    html = staff_client.get(LIST).content.decode()
    row = html[html.index(f'data-session-id="{session.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "SMS from +15550001111" in row
    assert "Ada Lovelace" in row and "+15550001111" in row
    assert ">SMS<" in row
    assert "badge status-active" in row and ">Active<" in row
    assert ">7<" in row
    stamp = timezone.localtime(session.last_activity_at)
    assert f'<time datetime="{stamp.isoformat()}" title="{stamp:%Y-%m-%d %H:%M:%S} UTC"' in row


def test_tabs_filter_by_channel_and_web_tab_holds_web_and_api(staff_client):
    sms = session_of(ChannelKind.SMS)
    whatsapp = session_of(ChannelKind.WHATSAPP)
    voice = session_of(ChannelKind.VOICE)
    web = session_of(ChannelKind.WEB)
    api = session_of(ChannelKind.API)
    assert page_ids(staff_client.get(LIST, {"channel": "sms"})) == [sms.pk]
    assert page_ids(staff_client.get(LIST, {"channel": "whatsapp"})) == [whatsapp.pk]
    assert page_ids(staff_client.get(LIST, {"channel": "voice"})) == [voice.pk]
    assert set(page_ids(staff_client.get(LIST, {"channel": "web"}))) == {web.pk, api.pk}
    response = staff_client.get(LIST)
    assert len(page_ids(response)) == 5
    counts = {tab["key"]: tab["count"] for tab in response.context["tabs"]}
    assert counts == {"": "5", "sms": "1", "whatsapp": "1", "voice": "1", "web": "2"}


def test_tab_counts_follow_the_status_filter(staff_client):
    session_of(ChannelKind.SMS)
    session_of(ChannelKind.SMS, status=SessionStatus.CLOSED)
    response = staff_client.get(LIST, {"status": "closed"})
    counts = {tab["key"]: tab["count"] for tab in response.context["tabs"]}
    assert counts["sms"] == "1" and counts[""] == "1"


def test_tab_counts_stop_at_the_cap(staff_client, monkeypatch):
    monkeypatch.setattr("sessions_app.ui.queries.COUNT_CAP", 2)
    for _ in range(3):
        session_of(ChannelKind.SMS)
    session_of(ChannelKind.VOICE)
    counts = {tab["key"]: tab["count"] for tab in staff_client.get(LIST).context["tabs"]}
    assert counts == {"": "2+", "sms": "2+", "whatsapp": "0", "voice": "1", "web": "0"}


def test_several_statuses_filter_together(staff_client):
    active = session_of()
    closed = session_of(status=SessionStatus.CLOSED)
    session_of(status=SessionStatus.ARCHIVED)
    ids = page_ids(staff_client.get(LIST, {"status": ["active", "closed"]}))
    assert set(ids) == {active.pk, closed.pk}


def test_business_and_date_filters(staff_client):
    now = timezone.now()
    old = session_of(business_id="acme", created_at=now - timedelta(days=10))
    new = session_of(business_id="acme", created_at=now)
    session_of(business_id="other", created_at=now)
    assert set(page_ids(staff_client.get(LIST, {"business": "acme"}))) == {old.pk, new.pk}
    day = (now - timedelta(days=10)).date().isoformat()
    assert page_ids(staff_client.get(LIST, {"business": "acme", "from": day, "to": day})) == [old.pk]
    assert page_ids(staff_client.get(LIST, {"from": now.date().isoformat(), "business": "acme"})) == [new.pk]


def test_bad_filter_values_are_named_and_ignored(staff_client):
    session_of()
    response = staff_client.get(LIST, {"channel": "fax", "status": "sleeping", "from": "yesterday"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown channel “fax”" in html
    assert "Unknown status “sleeping”" in html
    assert "From date “yesterday” is not a date" in html
    assert len(page_ids(response)) == 1


@pytest.mark.parametrize(
    ("term", "field"),
    [
        ("+1 (555) 000-4242", "phone"),
        ("5550004242", "phone"),
        ("grace", "name"),
        ("billing question", "title"),
        ("parcel", "message"),
    ],
)
def test_search_by_phone_name_title_and_message_text(staff_client, term, field):
    contact = ContactFactory(phone="+15550004242", display_name="Grace Hopper")
    target = session_of(contact=contact, title="A billing question")
    MessageFactory(session=target, content="where is my parcel?")
    MessageFactory(session=target, content="the parcel again")
    other = session_of(title="something else")
    MessageFactory(session=other, content="hello")
    assert page_ids(staff_client.get(LIST, {"q": term})) == [target.pk], field


def test_sort_by_created_and_by_last_activity(staff_client):
    now = timezone.now()
    older = session_of(created_at=now - timedelta(hours=2), last_activity_at=now)
    newer = session_of(created_at=now - timedelta(hours=1), last_activity_at=now - timedelta(minutes=30))
    assert page_ids(staff_client.get(LIST)) == [older.pk, newer.pk]
    assert page_ids(staff_client.get(LIST, {"sort": "created"})) == [newer.pk, older.pk]


@pytest.mark.parametrize("sort", ["activity", "created"])
def test_keyset_pages_cover_every_session_once_even_with_equal_times(staff_client, sort, monkeypatch):
    monkeypatch.setattr("sessions_app.ui.queries.PAGE_SIZE", 3)
    same = timezone.now()
    made = {session_of(last_activity_at=same, created_at=same).pk for _ in range(5)}
    made |= {
        session_of(last_activity_at=same - timedelta(minutes=i), created_at=same - timedelta(minutes=i)).pk
        for i in range(1, 4)
    }
    seen: list = []
    url = f"{LIST}?sort={sort}"
    while url:
        response = staff_client.get(url)
        seen += page_ids(response)
        next_url = response.context["next_url"]
        url = f"{LIST}{next_url}" if next_url else ""
    assert len(seen) == len(made) == 8
    assert set(seen) == made


def test_the_list_never_counts_or_offsets_the_whole_table(staff_client):
    for _ in range(3):
        session_of()
    with CaptureQueriesContext(connection) as queries:
        staff_client.get(LIST, {"cursor": "", "channel": "sms"})
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "OFFSET" not in sql
    assert "COUNT(" in sql  # the tab counts, grouped
    assert "GROUP BY" in sql


def test_the_list_costs_the_same_queries_for_3_or_30_sessions(staff_client):
    for _ in range(3):
        MessageFactory()
    with CaptureQueriesContext(connection) as few:
        staff_client.get(LIST)
    for _ in range(27):
        MessageFactory(session=session_of(contact=ContactFactory()))
    cache.clear()
    with CaptureQueriesContext(connection) as many:
        staff_client.get(LIST)
    assert len(few) == len(many)


def test_counts_and_chart_are_cached_so_a_repeat_view_runs_only_the_page_query(staff_client):
    session_of()
    with CaptureQueriesContext(connection) as first:
        staff_client.get(LIST)
    with CaptureQueriesContext(connection) as second:
        staff_client.get(LIST)
    assert len(first) - len(second) == 3  # the grouped tab counts, the chart's past days and today
    session_of()
    counts = {tab["key"]: tab["count"] for tab in staff_client.get(LIST).context["tabs"]}
    assert counts[""] == "1"  # cached; refreshed within COUNTS_TTL
    cache.clear()
    counts = {tab["key"]: tab["count"] for tab in staff_client.get(LIST).context["tabs"]}
    assert counts[""] == "2"


def test_the_empty_list_says_how_to_point_a_twilio_number_here(staff_client):
    html = staff_client.get(LIST).content.decode()
    assert "No sessions yet" in html
    assert "http://testserver/webhooks/twilio/sms/" in html
    assert "/webhooks/twilio/whatsapp/" in html and "/webhooks/twilio/voice/" in html
    assert "python3 run.py manage send_test_message" in html and "--url http://testserver" in html
    assert "set <code>PUBLIC_BASE_URL</code>" in html


def test_a_filter_with_no_match_says_what_to_do(staff_client):
    session_of()
    html = staff_client.get(LIST, {"q": "nothing matches this"}).content.decode()
    assert "No sessions match these filters" in html and "Clear all filters" in html


def test_user_content_is_escaped(staff_client):
    contact = ContactFactory(display_name="<b>bold</b>")
    session = session_of(contact=contact, title="<script>alert(1)</script>")
    MessageFactory(session=session, content="<img src=x onerror=alert(2)>")
    html = staff_client.get(LIST).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>bold</b>" not in html
    detail = staff_client.get(f"{LIST}{session.pk}/").content.decode()
    assert "<img src=x" not in detail and "&lt;img src=x onerror=alert(2)&gt;" in detail
    assert "<script>alert(1)" not in detail


@time_machine.travel("2026-03-15 12:00:00+00:00", tick=False)
def test_the_chart_draws_sessions_per_day_per_channel(staff_client):
    now = timezone.now()
    session_of(ChannelKind.SMS, created_at=now)
    session_of(ChannelKind.SMS, created_at=now)
    session_of(ChannelKind.WHATSAPP, created_at=now - timedelta(days=2))
    session_of(ChannelKind.VOICE, created_at=now - timedelta(days=45))  # outside the 30 days
    response = staff_client.get(LIST)
    days = response.context["chart"].days
    assert len(days) == 30
    assert days[-1].counts["sms"] == 2
    assert days[-3].counts["whatsapp"] == 1
    assert sum(day.counts["voice"] for day in days) == 0
    html = response.content.decode()
    assert "<svg" in html and "2026-03-15: 2 SMS" in html and "2026-03-13: 1 WhatsApp" in html


# --- live list updates -----------------------------------------------------------------------------


def test_list_updates_send_sessions_with_new_activity_matching_the_filters(staff_client):
    before = timezone.now() - timedelta(minutes=10)
    stale = session_of(last_activity_at=before - timedelta(hours=1))
    fresh_sms = session_of(ChannelKind.SMS)
    session_of(ChannelKind.WHATSAPP)
    response = staff_client.get(f"{LIST}updates/", {"since": before.isoformat(), "channel": "sms"})
    assert response.status_code == 200
    data = response.json()
    assert [row["id"] for row in data["rows"]] == [str(fresh_sms.pk)]
    assert f'data-session-id="{fresh_sms.pk}"' in data["rows"][0]["html"]
    assert data["counts"]["sms"] == "2" and data["counts"][""] == "3"
    assert str(stale.pk) not in response.content.decode()


def test_list_updates_mark_sessions_started_since_the_last_poll(staff_client):
    since = timezone.now() - timedelta(minutes=1)
    started_earlier = session_of(created_at=since - timedelta(hours=3))
    started_now = session_of()
    data = staff_client.get(f"{LIST}updates/", {"since": since.isoformat(), "sort": "created"}).json()
    assert {row["id"]: row["new"] for row in data["rows"]} == {
        str(started_now.pk): True,
        str(started_earlier.pk): False,
    }


def test_list_updates_need_a_since_time(staff_client):
    response = staff_client.get(f"{LIST}updates/", {"since": "soon"})
    assert response.status_code == 400
    assert b"since must be an ISO 8601 time" in response.content


# --- one session -------------------------------------------------------------------------------------


def test_the_session_page_shows_the_thread_oldest_first_with_roles_media_and_delivery(staff_client):
    session = session_of()
    now = timezone.now()
    MessageFactory(
        session=session,
        content="first",
        created_at=now - timedelta(minutes=3),
        media=[
            {"url": "https://api.twilio.com/x/Media/ME1", "content_type": "image/jpeg"},
            {"url": "https://api.twilio.com/x/Media/ME2", "content_type": "application/pdf"},
            {"url": "javascript:alert(1)", "content_type": "image/png"},
        ],
    )
    MessageFactory(
        session=session,
        content="second",
        direction="outbound",
        role=Role.AGENT,
        delivery_status="delivered",
        created_at=now - timedelta(minutes=2),
    )
    MessageFactory(
        session=session,
        content="third",
        direction="outbound",
        role=Role.STAFF,
        delivery_status="failed",
        delivery_error="30003 Unreachable",
        created_at=now - timedelta(minutes=1),
    )
    html = staff_client.get(f"{LIST}{session.pk}/").content.decode()
    assert html.index("first") < html.index("second") < html.index("third")
    assert '<img src="https://api.twilio.com/x/Media/ME1"' in html
    assert 'href="https://api.twilio.com/x/Media/ME2"' in html and "application/pdf" in html
    assert "javascript:" not in html
    assert ">Agent<" in html and ">Staff<" in html and ">Contact<" in html
    assert ">Delivered<" in html and ">Failed<" in html and "30003 Unreachable" in html


def test_the_session_page_shows_contact_metadata_and_status_history(staff_client):
    contact = ContactFactory(phone="+15550009999", display_name="Linus")
    session = session_of(contact=contact, metadata={"fromNumber": "+15550009999"}, business_id="acme")
    StatusChange.objects.create(
        session=session, from_status="active", to_status="closed", actor="system:sweep"
    )
    html = staff_client.get(f"{LIST}{session.pk}/").content.decode()
    assert "Linus" in html and "+15550009999" in html and "acme" in html and "fromNumber" in html
    assert "system:sweep" in html and "<strong>Closed</strong>" in html


def test_an_unknown_session_is_404(staff_client):
    assert staff_client.get(f"{LIST}00000000-0000-0000-0000-000000000000/").status_code == 404


def test_the_session_page_costs_the_same_queries_for_3_or_30_messages(staff_client):
    session = session_of()
    for _ in range(3):
        MessageFactory(session=session, media=[{"url": "https://e.com/a.png", "content_type": "image/png"}])
    url = f"{LIST}{session.pk}/"
    with CaptureQueriesContext(connection) as few:
        staff_client.get(url)
    for _ in range(27):
        MessageFactory(session=session, direction="outbound", role=Role.STAFF, delivery_status="sent")
    StatusChange.objects.create(session=session, from_status="active", to_status="closed", actor="x")
    with CaptureQueriesContext(connection) as many:
        staff_client.get(url)
    assert len(few) == len(many)


def test_close_goes_through_the_transition_function_and_records_who(staff_client):
    session = session_of()
    response = staff_client.post(f"{LIST}{session.pk}/status/", {"to": "closed"})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == SessionStatus.CLOSED
    change = StatusChange.objects.get(session=session)
    assert (change.from_status, change.to_status, change.actor) == ("active", "closed", "staff:staff")
    page = staff_client.get(response["Location"]).content.decode()
    assert "Session is now closed." in page
    assert 'data-action="active"' in page and 'data-action="closed"' not in page


@pytest.mark.parametrize(("to", "label"), [("resolved", "Resolve"), ("archived", "Archive")])
def test_resolve_and_archive_then_reopen(staff_client, to, label):
    session = session_of()
    staff_client.post(f"{LIST}{session.pk}/status/", {"to": to})
    session.refresh_from_db()
    assert session.status == to
    staff_client.post(f"{LIST}{session.pk}/status/", {"to": "active"})
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


def test_a_refused_transition_is_explained_and_changes_nothing(staff_client):
    session = session_of(status=SessionStatus.ARCHIVED)
    response = staff_client.post(f"{LIST}{session.pk}/status/", {"to": "closed"})
    assert response.status_code == 409
    html = response.content.decode()
    assert (
        "Close refused: An archived session cannot become closed; "
        "from archived it can become: active, merged." in html
    )
    session.refresh_from_db()
    assert session.status == SessionStatus.ARCHIVED
    assert not StatusChange.objects.exists()


def test_an_unknown_action_is_a_400(staff_client):
    session = session_of()
    response = staff_client.post(f"{LIST}{session.pk}/status/", {"to": "completed"})
    assert response.status_code == 400
    assert "not an action here" in response.content.decode()


def test_actions_need_csrf(staff_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    session = session_of()
    assert client.post(f"{LIST}{session.pk}/status/", {"to": "closed"}).status_code == 403
    assert client.post(f"{LIST}{session.pk}/reply/", {"body": "hi"}).status_code == 403
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE and not Message.objects.exists()
    page = client.get(f"{LIST}{session.pk}/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') >= 4  # every action, the reply and sign-out


def test_a_staff_reply_is_stored_through_the_outbound_path(staff_client):
    session = session_of(message_count=1)
    response = staff_client.post(f"{LIST}{session.pk}/reply/", {"body": "  We are on it.  "})
    assert response.status_code == 302
    message = Message.objects.get(session=session)
    assert (message.direction, message.role, message.content) == ("outbound", "staff", "We are on it.")
    assert message.delivery_status == "pending"
    assert message.metadata == {"sent_by": "staff:staff"}
    session.refresh_from_db()
    assert session.message_count == 2


@pytest.mark.parametrize(
    ("body", "error"), [("   ", "Write a reply before sending."), ("x" * 1601, "at most 1600")]
)
def test_a_bad_reply_is_a_400_that_keeps_the_text_and_stores_nothing(staff_client, body, error):
    session = session_of()
    response = staff_client.post(f"{LIST}{session.pk}/reply/", {"body": body})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Message.objects.exists()


def test_session_updates_send_new_messages_status_and_delivery(staff_client):
    session = session_of()
    earlier = timezone.now() - timedelta(minutes=10)
    old = MessageFactory(session=session, content="old", created_at=earlier - timedelta(minutes=1))
    pending = MessageFactory(
        session=session,
        direction="outbound",
        role=Role.AGENT,
        delivery_status="delivered",
        created_at=earlier - timedelta(minutes=1),
    )
    new = MessageFactory(session=session, content="new one")
    Session.objects.filter(pk=session.pk).update(status=SessionStatus.CLOSED, message_count=3)
    response = staff_client.get(
        f"{LIST}{session.pk}/updates/", {"since": earlier.isoformat(), "pending": f"{pending.pk},{old.pk}"}
    )
    data = response.json()
    assert [m["id"] for m in data["messages"]] == [new.pk]
    assert "new one" in data["messages"][0]["html"]
    assert data["status"] == "closed" and data["message_count"] == 3
    assert data["delivery"][str(pending.pk)] == {"status": "delivered", "label": "Delivered", "final": True}


def test_session_updates_reject_bad_pending_ids(staff_client):
    session = session_of()
    response = staff_client.get(
        f"{LIST}{session.pk}/updates/", {"since": timezone.now().isoformat(), "pending": "1,x"}
    )
    assert response.status_code == 400


def test_the_beat_task_counts_the_chart_so_no_page_has_to(django_assert_max_num_queries):
    from django.core.cache import cache

    from sessions_app.tasks import warm_staff_chart

    cache.clear()
    assert warm_staff_chart.delay().get() == 30
    with django_assert_max_num_queries(0):
        from sessions_app.ui.queries import daily_counts

        daily_counts()  # past days and today both come from the cache now
