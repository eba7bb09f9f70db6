"""The native API, /api/v1/: sessions, their messages, filters, ordering, errors."""

from __future__ import annotations

import pytest
import time_machine
from django.utils import timezone

from sessions_app.models import Message, Role, Session, SessionStatus, StatusChange
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


def test_a_user_creates_updates_and_deletes_their_session(api, alice, alice_token):
    created = api.post("/api/v1/sessions/", {"title": "Hello", "metadata": {"a": 1}}, auth=alice_token)
    assert created.status_code == 201, created.content
    sid = created.json()["id"]
    assert created.json()["owner"] == alice.pk and created.json()["channel_kind"] == "api"
    patched = api.patch(f"/api/v1/sessions/{sid}/", {"metadata": {"b": 2}, "title": "New"}, auth=alice_token)
    assert patched.json()["metadata"] == {"a": 1, "b": 2} and patched.json()["title"] == "New"
    put = api.put(f"/api/v1/sessions/{sid}/", {"description": "d"}, auth=alice_token)
    assert put.json()["metadata"] == {"a": 1, "b": 2} and put.json()["description"] == "d"
    assert api.delete(f"/api/v1/sessions/{sid}/", auth=alice_token).status_code == 204
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    ("action", "status"),
    [("close", "closed"), ("resolve", "resolved"), ("complete", "completed"), ("archive", "archived")],
)
def test_status_actions_go_through_the_lifecycle(api, alice_token, action, status):
    sid = api.post("/api/v1/sessions/", {}, auth=alice_token).json()["id"]
    response = api.post(f"/api/v1/sessions/{sid}/{action}/", {"reason": "done"}, auth=alice_token)
    assert response.status_code == 200 and response.json()["status"] == status
    change = StatusChange.objects.get(session_id=sid)
    assert change.actor == "user:alice" and change.reason == "done"
    reopened = api.post(f"/api/v1/sessions/{sid}/reopen/", auth=alice_token)
    assert reopened.json()["status"] == "active"


def test_a_refused_transition_is_a_409_that_says_why(api, alice_token):
    sid = api.post("/api/v1/sessions/", {}, auth=alice_token).json()["id"]
    api.post(f"/api/v1/sessions/{sid}/complete/", auth=alice_token)
    response = api.post(f"/api/v1/sessions/{sid}/resolve/", auth=alice_token)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "transition_refused" and "completed" in error["message"]


def test_activity_link_mission_and_active(api, alice_token):
    assert api.get("/api/v1/sessions/active/", auth=alice_token).status_code == 404
    sid = api.post("/api/v1/sessions/", {}, auth=alice_token).json()["id"]
    assert api.post(f"/api/v1/sessions/{sid}/activity/", auth=alice_token).status_code == 200
    linked = api.post(f"/api/v1/sessions/{sid}/link-mission/", {"mission_id": "m1"}, auth=alice_token)
    assert linked.json()["mission_id"] == "m1"
    assert api.get("/api/v1/sessions/active/", auth=alice_token).json()["id"] == sid


def test_a_new_message_goes_through_the_reuse_rule_and_counters(
    api, alice_token, django_capture_on_commit_callbacks
):
    sid = api.post("/api/v1/sessions/", {}, auth=alice_token).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/sessions/{sid}/messages/", {"content": "Hello"}, auth=alice_token)
    assert response.status_code == 201
    assert response.json()["session"] == sid and response.json()["role"] == Role.CONTACT
    session = Session.objects.get(pk=sid)
    assert session.message_count == 2  # the message and the agent's reply
    listed = api.get(f"/api/v1/sessions/{sid}/messages/", auth=alice_token).json()
    assert [m["role"] for m in listed["results"]] == [Role.CONTACT, Role.AGENT]
    newest_first = api.get(f"/api/v1/sessions/{sid}/messages/?ordering=-created_at", auth=alice_token).json()
    assert [m["role"] for m in newest_first["results"]] == [Role.AGENT, Role.CONTACT]


def test_a_message_to_an_ended_session_opens_a_new_one(api, alice_token):
    sid = api.post("/api/v1/sessions/", {"agent_id": "bot"}, auth=alice_token).json()["id"]
    api.post(f"/api/v1/sessions/{sid}/close/", auth=alice_token)
    response = api.post(f"/api/v1/sessions/{sid}/messages/", {"content": "again"}, auth=alice_token)
    new = Session.objects.get(pk=response.json()["session"])
    assert str(new.pk) != sid and new.agent_id == "bot" and new.status == SessionStatus.ACTIVE


def test_users_cannot_send_outbound_messages_but_staff_can(api, alice_token, staff, client):
    sid = api.post("/api/v1/sessions/", {}, auth=alice_token).json()["id"]
    body = {"content": "We are on it", "direction": "outbound"}
    assert api.post(f"/api/v1/sessions/{sid}/messages/", body, auth=alice_token).status_code == 403
    client.force_login(staff)
    response = api.post(f"/api/v1/sessions/{sid}/messages/", body)
    assert response.status_code == 201 and response.json()["role"] == Role.STAFF


def make_sessions():
    sms = ChannelFactory(kind="sms", address="+15005550006")
    web = ChannelFactory(kind="web", address="")
    phone = ContactFactory(phone="+15551230000", display_name="Ada Lovelace")
    other = ContactFactory(phone="+15559990000")
    with time_machine.travel("2025-01-10 10:00:00+00:00", tick=True) as clock:
        a = SessionFactory(channel=sms, contact=phone, business_id="B1", location_id="L1", agent_id="x")
        clock.shift(3600)
        b = SessionFactory(
            channel=web, contact=other, business_id="B2", status=SessionStatus.CLOSED, title="Refund"
        )
        clock.shift(3600)
        c = SessionFactory(channel=web, contact=other, business_id="B1", status=SessionStatus.RESOLVED)
        MessageFactory(session=c, content="my parcel never arrived")
    for s, minutes in ((a, 30), (b, 90), (c, 150)):
        Session.objects.filter(pk=s.pk).update(
            last_activity_at=s.created_at.replace(minute=0)
            + __import__("datetime").timedelta(minutes=minutes),
            message_count=minutes,
        )
    return a, b, c


def ids(response):
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def test_filters(api, staff_token):
    a, b, c = (str(s.pk) for s in make_sessions())
    get = lambda query: ids(api.get(f"/api/v1/sessions/?{query}", auth=staff_token))  # noqa: E731
    assert get("channel=sms") == [a]
    assert set(get("status=closed&status=resolved")) == {b, c}
    assert get("contact_phone=%2B1%20555%20123%200000") == [a]
    assert set(get("business_id=B1")) == {a, c}
    assert get("location_id=L1") == [a]
    assert get("agent_id=x") == [a]
    assert get("created_after=2025-01-10T10:30:00Z&created_before=2025-01-10T11:30:00Z") == [b]
    # An offset PostgreSQL cannot store (found by schemathesis: was a 500) is converted to UTC.
    assert set(get("created_after=2025-01-10T13:30:00%2B17:07&created_before=2025-01-10T11:30:00Z")) == {a, b}
    # A creation range lists newest created first unless the client orders otherwise (an index reads
    # it in that order); without one, by last activity. The first created is the last active here.
    Session.objects.filter(pk=a).update(last_activity_at=timezone.now())
    assert get("created_before=2025-01-10T13:00:00Z") == [c, b, a]
    assert get("created_before=2025-01-10T13:00:00Z&ordering=-last_activity_at") == [a, c, b]
    assert get("status=active&status=closed&status=resolved")[0] == a
    assert get("q=parcel") == [c]  # message text
    assert get("q=refund") == [b]  # title, any case
    assert get("q=lovelace") == [a]  # contact name
    assert get("q=1230000") == [a]  # contact phone


def test_ordering(api, staff_token):
    a, b, c = (str(s.pk) for s in make_sessions())
    assert ids(api.get("/api/v1/sessions/", auth=staff_token)) == [c, b, a]
    assert ids(api.get("/api/v1/sessions/?ordering=created_at", auth=staff_token)) == [a, b, c]
    assert ids(api.get("/api/v1/sessions/?ordering=-message_count", auth=staff_token)) == [c, b, a]


def test_cursor_pages_cover_every_session_once(api, staff_token):
    SessionFactory.create_batch(7)
    seen, url = [], "/api/v1/sessions/?page_size=3"
    while url:
        page = api.get(url, auth=staff_token).json()
        assert "count" not in page
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("channel=fax", "channel"),
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("created_after=yesterday", "created"),
        ("contact_phone=abc", "contact_phone"),
        ("q=a", "q"),
        ("owner=me", "owner"),
        ("owner=9.223372036854776e%2B18", "owner"),  # found by schemathesis: was a 500
        ("contact=99999999999999999999", "contact"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(api, staff_token, query, field):
    response = api.get(f"/api/v1/sessions/?{query}", auth=staff_token)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] and body["message"] and field in body["fields"]


def test_every_error_has_the_same_shape(api, alice_token):
    cases = [
        (api.get("/api/v1/sessions/"), 401),
        (api.get("/api/v1/sessions/00000000-0000-4000-8000-000000000000/", auth=alice_token), 404),
        (api.get("/api/v1/nothing-here/", auth=alice_token), 404),
        (api.get("/api/v1/contacts/99999999999999999999/", auth=alice_token), 404),
        (api.request("put", "/api/v1/sessions/active/", {}, auth=alice_token), 405),
        (api.post("/api/v1/sessions/", {"title": "x" * 300}, auth=alice_token), 400),
        (api.post("/api/v1/contacts/", {"phone": "+15550000000"}, auth=alice_token), 403),
        (
            api.client.post(
                "/api/v1/sessions/", data="title=x", content_type="application/x-www-form-urlencoded",
                HTTP_AUTHORIZATION=f"Bearer {alice_token}",
            ),
            415,
        ),
        (
            api.client.post(
                "/api/v1/sessions/", data="{oops", content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {alice_token}",
            ),
            400,
        ),
    ]  # fmt: skip
    for response, status in cases:
        assert response.status_code == status, (status, response.content)
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
    assert not Session.objects.exists()


def test_contacts_and_channels_are_readable_by_whoever_sees_their_sessions(
    api, alice, alice_token, staff_token
):
    mine = SessionFactory(owner=alice)
    SessionFactory()  # someone else's
    contacts = api.get("/api/v1/contacts/", auth=alice_token).json()["results"]
    assert [c["id"] for c in contacts] == [mine.contact_id]
    channels = api.get("/api/v1/channels/", auth=alice_token).json()
    assert [c["id"] for c in channels] == [mine.channel_id]
    assert len(api.get("/api/v1/contacts/", auth=staff_token).json()["results"]) == 2
    made = api.post("/api/v1/contacts/", {"display_name": "New"}, auth=staff_token)
    assert made.status_code == 201
    in_use = api.delete(f"/api/v1/contacts/{mine.contact_id}/", auth=staff_token)
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "in_use"


def test_nothing_is_half_written_when_a_message_is_refused(api, alice_token):
    sid = api.post("/api/v1/sessions/", {}, auth=alice_token).json()["id"]
    response = api.post(f"/api/v1/sessions/{sid}/messages/", {"content": ""}, auth=alice_token)
    assert response.status_code == 400 and "content" in response.json()["error"]["fields"]
    assert not Message.objects.exists()
    assert Session.objects.get(pk=sid).message_count == 0


def test_search_finds_text_in_any_case_and_every_matching_session(api, staff_token):
    a, b, c = (str(s.pk) for s in make_sessions())
    MessageFactory(session_id=a, content="Where is my PARCEL?")
    assert set(ids(api.get("/api/v1/sessions/?q=parcel", auth=staff_token))) == {a, c}
    assert ids(api.get("/api/v1/sessions/?q=lovelace", auth=staff_token)) == [a]
    assert ids(api.get("/api/v1/sessions/?q=refund", auth=staff_token)) == [b]
    assert ids(api.get("/api/v1/sessions/?q=nothing-like-it", auth=staff_token)) == []


def test_repeatable_filters_select_no_distinct(api, staff_token):
    """channel and status are the session's own columns: a DISTINCT would only make PostgreSQL sort
    every matching session instead of walking an index."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_sessions()
    with CaptureQueriesContext(connection) as queries:
        ids(api.get("/api/v1/sessions/?status=closed&status=resolved&channel=web", auth=staff_token))
    assert not any("DISTINCT" in q["sql"].upper() for q in queries.captured_queries)


def test_staff_cannot_give_a_channel_a_reuse_window_longer_than_its_abandon_after(api, staff_token, settings):
    settings.SESSION_ABANDON_AFTER = 1800
    channel = ChannelFactory(reuse_window=None, abandon_after=None)
    path = f"/api/v1/channels/{channel.pk}/"
    refused = api.patch(path, {"reuse_window": 3600}, auth=staff_token)
    assert refused.status_code == 400
    assert "must not be longer than abandon-after" in refused.content.decode()
    assert "reuse_window" in refused.content.decode()
    channel.refresh_from_db()
    assert channel.reuse_window is None
    both = api.patch(path, {"reuse_window": 3600, "abandon_after": 7200}, auth=staff_token)
    assert both.status_code == 200, both.content
    channel.refresh_from_db()
    assert (channel.reuse_window, channel.abandon_after) == (3600, 7200)
    own_limit = api.patch(path, {"reuse_window": 9000}, auth=staff_token)
    assert own_limit.status_code == 400
    assert "abandon_after" in own_limit.content.decode()


def test_a_second_channel_with_the_same_kind_and_address_is_a_400_not_a_500(api, staff_token):
    ChannelFactory(kind="sms", address="+15005550006")
    twin = {"kind": "sms", "address": "+15005550006", "name": "again"}
    refused = api.post("/api/v1/channels/", twin, auth=staff_token)
    assert refused.status_code == 400, refused.content
    assert "already exists" in refused.content.decode()
    other = ChannelFactory(kind="sms", address="+15005550007")
    moved = api.patch(f"/api/v1/channels/{other.pk}/", {"address": "+15005550006"}, auth=staff_token)
    assert moved.status_code == 400, moved.content
    # Its own unchanged values are no clash with itself.
    same = api.patch(f"/api/v1/channels/{other.pk}/", {"name": "renamed"}, auth=staff_token)
    assert same.status_code == 200, same.content
