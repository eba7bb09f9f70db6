"""Session boundaries through the native API: the channel's reopen window, merge and split."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from channels_redis.pubsub import RedisPubSubChannelLayer

from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import Channel, ChannelKind, Message, Session, SessionStatus, StatusChange
from sessions_app.realtime.groups import session_group
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

S = SessionStatus
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REDIS_URL = os.environ.get("REDIS_URL", "")


def at(minutes: float) -> datetime:
    return NOON + timedelta(minutes=minutes)


def session_with(contact, channel, minutes: list[float], **fields) -> Session:
    """A session whose messages were written at `minutes` past noon, counters as ingest keeps them."""
    session = SessionFactory(
        contact=contact,
        channel=channel,
        message_count=len(minutes),
        first_message_at=at(min(minutes)),
        last_message_at=at(max(minutes)),
        last_activity_at=at(max(minutes)),
        **fields,
    )
    for m in minutes:
        MessageFactory(session=session, created_at=at(m), content=f"at {m}")
    return session


@pytest.fixture
def pair(db):
    """Two sessions of one contact on one channel, their messages interleaved in time."""
    channel = ChannelFactory()
    contact = ContactFactory()
    target = session_with(contact, channel, [0, 2, 20], title="first")
    source = session_with(contact, channel, [1, 10, 30, 31], title="second")
    return source, target


# --- The reopen window on the channels API --------------------------------------------------------------


def test_staff_set_the_reopen_window_with_the_channels_api(api, staff_token):
    channel = ChannelFactory(reopen_window=None)
    path = f"/api/v1/channels/{channel.pk}/"
    assert api.get(path, auth=staff_token).json()["reopen_window"] is None
    changed = api.patch(path, {"reopen_window": 90}, auth=staff_token)
    assert changed.status_code == 200, changed.content
    assert changed.json()["reopen_window"] == 90
    channel.refresh_from_db()
    assert channel.effective_reopen_window == timedelta(seconds=90)

    negative = api.patch(path, {"reopen_window": -1}, auth=staff_token)
    assert negative.status_code == 400
    assert "reopen_window" in negative.json()["error"]["fields"]
    cleared = api.patch(path, {"reopen_window": None}, auth=staff_token)
    assert cleared.status_code == 200
    assert cleared.json()["reopen_window"] is None


def test_only_staff_change_a_channels_reopen_window(api, alice, alice_token):
    session = SessionFactory(owner=alice)
    path = f"/api/v1/channels/{session.channel_id}/"
    assert api.get(path, auth=alice_token).status_code == 200
    refused = api.patch(path, {"reopen_window": 90}, auth=alice_token)
    assert refused.status_code == 403
    assert Channel.objects.get(pk=session.channel_id).reopen_window is None


def test_a_chat_message_to_a_session_closed_within_the_window_reopens_it(api, staff_token):
    channel = ChannelFactory(kind=ChannelKind.API, address="", reopen_window=120)
    session = SessionFactory(channel=channel)
    transition_session(session, S.CLOSED, actor="staff:alice")
    response = api.post(
        f"/api/v1/sessions/{session.pk}/messages/", {"content": "back again"}, auth=staff_token
    )
    assert response.status_code == 201, response.content
    assert response.json()["session"] == str(session.pk)
    session.refresh_from_db()
    assert session.status == S.ACTIVE


# --- Merge ---------------------------------------------------------------------------------------------


def test_merging_moves_the_messages_into_the_target_in_time_order(api, staff_token, pair):
    source, target = pair
    response = api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=staff_token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(target.pk)
    assert body["message_count"] == 7
    assert body["first_message_at"] == at(0).isoformat().replace("+00:00", "Z")
    assert body["last_message_at"] == at(31).isoformat().replace("+00:00", "Z")
    assert body["status"] == S.ACTIVE and body["merged_into"] is None
    thread = api.get(f"/api/v1/sessions/{target.pk}/messages/", auth=staff_token).json()["results"]
    assert [m["content"] for m in thread] == [f"at {m}" for m in (0, 1, 2, 10, 20, 30, 31)]

    merged = api.get(f"/api/v1/sessions/{source.pk}/", auth=staff_token).json()
    assert (merged["status"], merged["merged_into"], merged["message_count"]) == (S.MERGED, str(target.pk), 0)
    assert merged["first_message_at"] is None and merged["last_message_at"] is None
    target.refresh_from_db()
    assert target.last_activity_at == at(31)
    source_change = StatusChange.objects.get(session=source)
    assert (source_change.from_status, source_change.to_status) == (S.ACTIVE, S.MERGED)
    assert str(target.pk) in source_change.reason
    assert source_change.actor == "staff:staffer"
    target_change = StatusChange.objects.get(session=target)
    assert (target_change.from_status, target_change.to_status) == (S.ACTIVE, S.ACTIVE)
    assert str(source.pk) in target_change.reason


def test_merged_words_are_found_in_the_target_and_no_longer_in_the_source(api, staff_token, pair):
    source, target = pair
    Message.objects.filter(session=source).update(content="zanzibar")  # the update trigger refreshes it
    assert [s["id"] for s in api.get("/api/v1/sessions/?q=zanzibar", auth=staff_token).json()["results"]] == [
        str(source.pk)
    ]
    api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=staff_token)
    found = api.get("/api/v1/sessions/?q=zanzibar", auth=staff_token).json()["results"]
    assert [s["id"] for s in found] == [str(target.pk)]


def test_sessions_of_different_contacts_are_not_merged(api, staff_token, pair):
    source, _ = pair
    stranger = session_with(ContactFactory(), source.channel, [5])
    response = api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(stranger.pk)}, auth=staff_token)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "different_contacts"
    assert error["fields"] == {"into": ["Both sessions must belong to the same contact."]}
    assert source.messages.count() == 4
    assert not StatusChange.objects.exists()


def test_sessions_of_different_channels_are_not_merged(api, staff_token, pair):
    source, _ = pair
    elsewhere = session_with(source.contact, ChannelFactory(kind=ChannelKind.WHATSAPP), [5])
    response = api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(elsewhere.pk)}, auth=staff_token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "different_channels"
    assert Session.objects.get(pk=source.pk).status == S.ACTIVE


def test_a_merge_into_itself_an_unknown_or_a_merged_session_is_refused(api, staff_token, pair):
    source, target = pair
    path = f"/api/v1/sessions/{source.pk}/merge/"
    itself = api.post(path, {"into": str(source.pk)}, auth=staff_token)
    assert (itself.status_code, itself.json()["error"]["code"]) == (400, "same_session")
    unknown = api.post(path, {"into": str(uuid.uuid4())}, auth=staff_token)
    assert unknown.status_code == 400
    assert "into" in unknown.json()["error"]["fields"]
    missing = api.post(path, {}, auth=staff_token)
    assert missing.status_code == 400
    assert api.post(path, {"into": str(target.pk)}, auth=staff_token).status_code == 200
    again = api.post(path, {"into": str(target.pk)}, auth=staff_token)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_merged")
    into_merged = api.post(f"/api/v1/sessions/{target.pk}/merge/", {"into": str(source.pk)}, auth=staff_token)
    assert into_merged.status_code == 409


def test_a_merged_session_cannot_be_reopened_or_closed(api, staff_token, pair):
    source, target = pair
    api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=staff_token)
    for action in ("reopen", "close", "archive"):
        refused = api.post(f"/api/v1/sessions/{source.pk}/{action}/", auth=staff_token)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "transition_refused"


def test_end_users_do_not_merge_or_split_sessions(api, alice, alice_token):
    channel, contact = ChannelFactory(), ContactFactory()
    source = session_with(contact, channel, [1], owner=alice)
    target = session_with(contact, channel, [0, 3], owner=alice)
    merge = api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=alice_token)
    assert merge.status_code == 403
    last = target.messages.order_by("created_at").last()
    split = api.post(f"/api/v1/sessions/{target.pk}/split/", {"message_id": last.pk}, auth=alice_token)
    assert split.status_code == 403
    assert Session.objects.filter(status=S.MERGED).count() == 0 and Session.objects.count() == 2


def test_a_key_limited_to_a_business_merges_only_within_it(api, business_key, service_key):
    channel, contact = ChannelFactory(), ContactFactory()
    mine = session_with(contact, channel, [1], business_id="B1")
    theirs = session_with(contact, channel, [0], business_id="B2")
    refused = api.post(f"/api/v1/sessions/{mine.pk}/merge/", {"into": str(theirs.pk)}, auth=business_key)
    assert refused.status_code == 400
    done = api.post(f"/api/v1/sessions/{mine.pk}/merge/", {"into": str(theirs.pk)}, auth=service_key)
    assert done.status_code == 200
    assert done.json()["message_count"] == 2


def test_the_merged_status_is_a_list_filter(api, staff_token, pair):
    source, target = pair
    api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=staff_token)
    merged = api.get("/api/v1/sessions/?status=merged", auth=staff_token).json()["results"]
    assert [s["id"] for s in merged] == [str(source.pk)]
    both = api.get("/api/v1/sessions/?status=merged&status=active", auth=staff_token).json()["results"]
    assert {s["id"] for s in both} == {str(source.pk), str(target.pk)}


@pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis: set REDIS_URL to run")
def test_a_merge_is_announced_on_both_sessions_topics_once_committed(
    api, staff_token, pair, settings, django_capture_on_commit_callbacks
):
    source, target = pair
    prefix = f"test{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": prefix},
        }
    }
    receiver = RedisPubSubChannelLayer(hosts=[REDIS_URL], prefix=prefix)
    joined = threading.Event()
    got: list[dict] = []

    async def listen() -> None:
        channel = await receiver.new_channel()
        await receiver.group_add(session_group(target.pk), channel)
        joined.set()
        got.append(await asyncio.wait_for(receiver.receive(channel), 5))
        await receiver.flush()

    # The listener on a loop of its own; the merge here, on the test's connection and transaction.
    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    try:
        assert joined.wait(10)
        with django_capture_on_commit_callbacks(execute=True):
            path = f"/api/v1/sessions/{source.pk}/merge/"
            assert api.post(path, {"into": str(target.pk)}, auth=staff_token).status_code == 200
    finally:
        listener.join()
    assert got[0]["event"] == "session_merged"
    assert got[0]["payload"] == {
        "mergedFrom": str(source.pk),
        "mergedInto": str(target.pk),
        "moved": 4,
        "sessionId": str(target.pk),
        "businessId": "",
        "status": S.ACTIVE,
        "messageCount": 7,
    }


# --- Split ---------------------------------------------------------------------------------------------


def test_a_split_moves_the_message_and_every_later_one_to_a_new_session(api, staff_token, pair):
    _, session = pair  # messages at 0, 2 and 20
    middle = session.messages.get(content="at 2")
    response = api.post(f"/api/v1/sessions/{session.pk}/split/", {"message_id": middle.pk}, auth=staff_token)
    assert response.status_code == 201, response.content
    new = response.json()
    assert new["id"] != str(session.pk)
    assert (new["message_count"], new["status"], new["title"]) == (2, S.ACTIVE, "first")
    assert new["contact"]["id"] == session.contact_id and new["channel"] == session.channel_id
    assert new["first_message_at"] == at(2).isoformat().replace("+00:00", "Z")
    assert new["last_message_at"] == at(20).isoformat().replace("+00:00", "Z")
    thread = api.get(f"/api/v1/sessions/{new['id']}/messages/", auth=staff_token).json()["results"]
    assert [m["content"] for m in thread] == ["at 2", "at 20"]

    session.refresh_from_db()
    assert (session.message_count, session.first_message_at, session.last_message_at) == (1, at(0), at(0))
    assert session.last_activity_at == at(0)
    assert [m.content for m in session.messages.all()] == ["at 0"]
    assert new["id"] in StatusChange.objects.get(session=session).reason
    assert str(session.pk) in StatusChange.objects.get(session_id=new["id"]).reason


def test_a_split_at_the_last_message_leaves_everything_else(api, staff_token, pair):
    _, session = pair
    last = session.messages.order_by("created_at").last()
    response = api.post(f"/api/v1/sessions/{session.pk}/split/", {"message_id": last.pk}, auth=staff_token)
    assert response.status_code == 201
    assert response.json()["message_count"] == 1
    session.refresh_from_db()
    assert session.message_count == 2 and session.last_message_at == at(2)


def test_a_split_at_the_first_message_is_refused(api, staff_token, pair):
    _, session = pair
    first = session.messages.order_by("created_at").first()
    response = api.post(f"/api/v1/sessions/{session.pk}/split/", {"message_id": first.pk}, auth=staff_token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "first_message"
    assert "message_id" in response.json()["error"]["fields"]
    assert Session.objects.count() == 2
    assert session.messages.count() == 3


def test_a_split_at_another_sessions_message_is_refused(api, staff_token, pair):
    source, session = pair
    foreign = source.messages.order_by("created_at").last()
    response = api.post(f"/api/v1/sessions/{session.pk}/split/", {"message_id": foreign.pk}, auth=staff_token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_in_session"
    bad = api.post(f"/api/v1/sessions/{session.pk}/split/", {"message_id": "x"}, auth=staff_token)
    assert bad.status_code == 400


def test_a_split_then_merge_restores_the_thread(api, staff_token, pair):
    _, session = pair
    cut = session.messages.get(content="at 20")
    new = api.post(f"/api/v1/sessions/{session.pk}/split/", {"message_id": cut.pk}, auth=staff_token).json()
    back = api.post(f"/api/v1/sessions/{new['id']}/merge/", {"into": str(session.pk)}, auth=staff_token)
    assert back.status_code == 200
    assert back.json()["message_count"] == 3


# --- The window report -----------------------------------------------------------------------------------


def test_the_window_report_answers_the_shape_the_issue_gives(api, staff_token):
    channel = ChannelFactory()
    session = SessionFactory(channel=channel)
    now = datetime.now(tz=UTC)
    for seconds_ago in (3000, 2900, 100):  # gaps of 100 s and 2800 s
        MessageFactory(session=session, created_at=now - timedelta(seconds=seconds_ago))
    MessageFactory(session=session, created_at=now - timedelta(days=31))  # before the default period
    response = api.get(f"/api/v1/channels/{channel.pk}/window-report/?windows=60,300,3600", auth=staff_token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"windows", "gaps"}
    assert body["windows"] == [
        {"seconds": 60, "sessions": 3},
        {"seconds": 300, "sessions": 2},
        {"seconds": 3600, "sessions": 1},
    ]
    counts = {g["upper_seconds"]: g["count"] for g in body["gaps"]}
    assert counts[120] == 1 and counts[3600] == 1 and sum(counts.values()) == 2
    assert body["gaps"][-1]["upper_seconds"] is None
    assert all(set(g) == {"upper_seconds", "count"} for g in body["gaps"])

    default = api.get(f"/api/v1/channels/{channel.pk}/window-report/", auth=staff_token).json()
    assert [w["seconds"] for w in default["windows"]] == [60, 300, 900]
    since = (now - timedelta(days=40)).isoformat()
    longer = api.client.get(
        f"/api/v1/channels/{channel.pk}/window-report/",
        {"windows": "300", "since": since},
        HTTP_AUTHORIZATION=f"Bearer {staff_token}",
    ).json()
    assert longer["windows"] == [{"seconds": 300, "sessions": 3}]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("windows=abc", "windows"),
        ("windows=0", "windows"),
        ("windows=" + ",".join(str(n) for n in range(1, 30)), "windows"),
        ("since=yesterday", "since"),
        ("until=2026-01-01T00:00:00", "until"),
        ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
        ("since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
    ],
)
def test_bad_window_report_parameters_are_a_400_naming_them(api, staff_token, query, field):
    channel = ChannelFactory()
    response = api.get(f"/api/v1/channels/{channel.pk}/window-report/?{query}", auth=staff_token)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_only_staff_read_a_window_report(api, alice, alice_token, service_key):
    session = SessionFactory(owner=alice)
    path = f"/api/v1/channels/{session.channel_id}/window-report/"
    assert api.get(path, auth=alice_token).status_code == 403
    assert api.get(path, auth=service_key).status_code == 403
    assert api.get(path).status_code == 401


@pytest.mark.parametrize(
    "query",
    ["until=0001-01-02T00:00:00Z", "since=0001-01-01T00:00:00%2B17:07&until=0001-01-03T00:00:00Z"],
)
def test_window_report_times_at_the_edge_of_the_calendar_are_a_400_not_a_500(api, staff_token, query):
    channel = ChannelFactory()
    response = api.get(f"/api/v1/channels/{channel.pk}/window-report/?{query}", auth=staff_token)
    assert response.status_code == 400, response.content


def test_a_merged_session_cannot_be_split(api, staff_token, pair):
    source, target = pair
    api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=staff_token)
    moved = target.messages.order_by("created_at").last()
    response = api.post(f"/api/v1/sessions/{source.pk}/split/", {"message_id": moved.pk}, auth=staff_token)
    assert (response.status_code, response.json()["error"]["code"]) == (409, "already_merged")


def test_the_sweep_never_moves_a_merged_session(api, staff_token, pair, settings):
    settings.SESSION_ARCHIVE_AFTER = 60
    settings.SESSION_ABANDON_AFTER = 60
    source, target = pair
    api.post(f"/api/v1/sessions/{source.pk}/merge/", {"into": str(target.pk)}, auth=staff_token)
    for days in (30, 31):  # abandoned, then archived
        with time_machine.travel(datetime.now(tz=UTC) + timedelta(days=days)):
            sweep_sessions()
    source.refresh_from_db()
    assert source.status == S.MERGED
    assert not StatusChange.objects.filter(session=source, actor="system:sweep").exists()
    assert Session.objects.get(pk=target.pk).status == S.ARCHIVED
