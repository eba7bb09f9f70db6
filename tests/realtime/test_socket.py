"""The Phoenix-protocol socket, through Channels' own WebsocketCommunicator on the real ASGI app."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from config.asgi import application
from sessions_app.models import Message, Session
from tests.factories import UserFactory
from tests.twilio_helpers import send_sms

REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "channels_postgres"])


def token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


class Socket:
    def __init__(self, token: str | None, **params: str) -> None:
        """`params` as a Phoenix client sends its `params` (seed 001's: businessId, userId, token)."""
        query = {"vsn": "2.0.0", **({"token": token} if token else {}), **params}
        path = "/socket/websocket?" + urlencode(query)
        self.communicator = WebsocketCommunicator(application, path)
        self.ref = 0

    async def connect(self, timeout: float = 10) -> bool:
        # Not the communicator's default of 1 s: a loaded machine (the suite's other worker, say)
        # took longer to refuse a forged token (CI, 2026-12-04).
        connected, _ = await self.communicator.connect(timeout=timeout)
        return connected

    async def push(self, topic: str, event: str, payload: Any, join_ref: str | None = "1") -> str:
        self.ref += 1
        ref = str(self.ref)
        await self.communicator.send_to(text_data=json.dumps([join_ref, ref, topic, event, payload]))
        return ref

    async def raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 10) -> list[Any]:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def reply_to(self, ref: str, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame = await self.receive(timeout)
            if frame[3] == "phx_reply" and frame[1] == ref:
                return frame[4]

    async def events(self, count: int, timeout: float = 10) -> list[list[Any]]:
        found = []
        while len(found) < count:
            frame = await self.receive(timeout)
            if frame[3] != "phx_reply":
                found.append(frame)
        return found

    async def nothing_more(self) -> bool:
        return await self.communicator.receive_nothing(timeout=0.5)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture(autouse=True, params=["channels-postgres", "channels-redis"])
def clean_layer(request, settings):
    """Each test on both layers the product runs on: channels-postgres (no Redis) and channels-redis.

    A layer of its own for each test: each test runs on an event loop of its own, and a layer keeps
    per-loop state (channels-postgres: the loop its listener runs on)."""
    if request.param == "channels-redis":
        if not REDIS_URL:
            pytest.skip("needs a real Redis: set REDIS_URL to run")
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "prefix": f"test{uuid.uuid4().hex[:8]}"},
            }
        }
    else:
        settings.CHANNEL_LAYERS = {"default": settings.POSTGRES_CHANNEL_LAYER}
    channel_layers.backends.clear()
    yield
    run(get_channel_layer().flush())
    channel_layers.backends.clear()


def run(coro: Any) -> Any:
    async def awaited() -> Any:
        try:
            return await coro
        finally:
            # As a server shuts down (realtime/lifespan.py): the layer closes its connections on this
            # loop first; the loop then cancels what still runs on it (channels-postgres:
            # postgres_layer.py says why in that order).
            close = getattr(get_channel_layer(), "close_pools", None)
            if close is not None:
                await close()

    return async_to_sync(awaited)()


def test_it_refuses_a_socket_without_a_token():
    async def scenario() -> None:
        socket = Socket(None)
        assert not await socket.connect()

    run(scenario())


def test_it_refuses_a_bad_token():
    async def scenario() -> None:
        socket = Socket("not-a-token")
        assert not await socket.connect()

    run(scenario())


def test_it_answers_heartbeats():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        ref = await socket.push("phoenix", "heartbeat", {}, join_ref=None)
        assert await socket.reply_to(ref) == {"status": "ok", "response": {}}
        await socket.close()

    run(scenario())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "bad frame: not JSON"),
        ('{"topic": "x"}', "bad frame: a frame is a JSON array"),
        ('["1", "2", "messages:B1", "phx_join", "payload"]', "bad frame: payload must be a JSON object"),
        ('["1", "2", "", "phx_join", {}]', "bad frame: topic must be a non-empty string"),
    ],
)
def test_bad_frames_get_an_error_reply_and_the_socket_stays_open(frame, reason):
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        await socket.raw(frame)
        reply = await socket.receive()
        assert reply[3] == "phx_reply"
        assert reply[4]["status"] == "error"
        assert reply[4]["response"]["reason"].startswith(reason)
        ref = await socket.push("phoenix", "heartbeat", {}, join_ref=None)
        assert (await socket.reply_to(ref))["status"] == "ok"
        await socket.close()

    run(scenario())


def test_unknown_topics_and_unjoined_pushes_are_refused():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        ref = await socket.push("rooms:lobby", "phx_join", {})
        assert await socket.reply_to(ref) == {"status": "error", "response": {"reason": "unmatched topic"}}
        ref = await socket.push("messages:B1", "new_message", {"userId": "u", "message": "hi"})
        assert await socket.reply_to(ref) == {"status": "error", "response": {"reason": "unmatched topic"}}
        await socket.close()

    run(scenario())


def test_a_pushed_message_is_stored_and_the_reply_streams_back_on_the_topic():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff), businessId="B0100001", userId="user_123")
        assert await socket.connect()
        ref = await socket.push("messages:B0100001", "phx_join", {"userId": "user_123"})
        assert (await socket.reply_to(ref))["status"] == "ok"
        ref = await socket.push(
            "messages:B0100001",
            "new_message",
            {
                "businessId": "B0100001",
                "userId": "user_123",
                "message": "Bună ziua!",
                "timestamp": "2025-10-12T10:00:00Z",
            },
        )
        reply = await socket.reply_to(ref)
        assert reply["status"] == "ok"
        session_id = reply["response"]["sessionId"]
        received, chunk, final = await socket.events(3)
        assert received[3] == "message_received" and received[4]["content"] == "Bună ziua!"
        assert received[4]["type"] == "user"
        assert chunk[3] == "new_message" and chunk[4]["streaming"]["isChunk"] is True
        assert final[3] == "new_message" and "streaming" not in final[4]
        assert final[4]["sessionId"] == session_id
        assert final[4]["message"] == chunk[4]["message"]
        assert final[4]["responseId"].startswith("resp_")
        assert final[4]["actions"] == []
        await socket.close()
        return session_id

    session_id = run(scenario())
    session = Session.objects.get(pk=session_id)
    assert session.business_id == "B0100001"
    assert list(session.messages.values_list("role", flat=True)) == ["contact", "agent"]
    assert Message.objects.filter(role="agent").count() == 1


def test_invalid_message_payloads_are_refused_naming_the_fields():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff), userId="u1")
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("messages:B1", "phx_join", {})))["status"] == "ok"
        ref = await socket.push(
            "messages:B1", "new_message", {"businessId": "B2", "message": "", "sessionId": "x"}
        )
        reply = await socket.reply_to(ref)
        assert reply["status"] == "error"
        assert set(reply["response"]["fields"]) == {"businessId", "message", "userId", "sessionId"}
        await socket.close()

    run(scenario())
    assert not Message.objects.exists()


def test_an_sms_reaches_the_staff_topic():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("staff:sessions", "phx_join", {})))["status"] == "ok"
        response = await sync_to_async(send_sms)(Client(), "+15551234567", "Hello from SMS")
        assert response.status_code == 200
        received = (await socket.events(1))[0]
        assert received[2] == "staff:sessions"
        assert received[3] == "message_received"
        assert received[4]["content"] == "Hello from SMS"
        assert received[4]["channel"] == "sms"
        await socket.close()

    run(scenario())


def test_a_session_topic_hears_the_texts_after_the_one_that_opened_it():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        # The text that opens the session is not broadcast on its topic (nobody can have joined a
        # topic whose id did not exist yet); every later one is.
        response = await sync_to_async(send_sms)(Client(), "+15551230000", "First")
        assert response.status_code == 200
        session = await Session.objects.aget()
        socket = Socket(token_for(staff))
        assert await socket.connect()
        topic = f"session:{session.pk}"
        assert (await socket.reply_to(await socket.push(topic, "phx_join", {})))["status"] == "ok"
        response = await sync_to_async(send_sms)(Client(), "+15551230000", "Second")
        assert response.status_code == 200
        received = (await socket.events(1))[0]
        assert received[2] == topic
        assert received[3] == "message_received"
        assert received[4]["content"] == "Second"
        assert await Session.objects.acount() == 1
        await socket.close()

    run(scenario())


def test_an_end_user_sees_only_their_own_sessions_on_a_business_topic():
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")

    async def scenario() -> None:
        a, b = Socket(token_for(alice)), Socket(token_for(bob))
        assert await a.connect() and await b.connect()
        for socket in (a, b):
            assert (await socket.reply_to(await socket.push("messages:B1", "phx_join", {})))["status"] == "ok"
        ref = await a.push("messages:B1", "new_message", {"userId": "alice", "message": "private words"})
        session_id = (await a.reply_to(ref))["response"]["sessionId"]
        assert len(await a.events(3)) == 3
        assert await b.nothing_more()
        # Nor can bob subscribe to alice's session, and non-staff never get the staff topic.
        assert (await b.reply_to(await b.push(f"session:{session_id}", "phx_join", {})))["status"] == "error"
        assert (await b.reply_to(await b.push("staff:sessions", "phx_join", {})))["status"] == "error"
        assert (await a.reply_to(await a.push(f"session:{session_id}", "phx_join", {})))["status"] == "ok"
        await a.close()
        await b.close()

    run(scenario())
    assert Session.objects.get().owner == alice


def test_leaving_a_topic_closes_it_and_stops_its_events():
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        await socket.reply_to(await socket.push("staff:sessions", "phx_join", {}, join_ref="7"))
        ref = await socket.push("staff:sessions", "phx_leave", {}, join_ref="7")
        assert (await socket.reply_to(ref))["status"] == "ok"
        close = await socket.receive()
        assert close[2:4] == ["staff:sessions", "phx_close"]
        await sync_to_async(send_sms)(Client(), "+15551234567", "nobody listens")
        assert await socket.nothing_more()
        await socket.close()

    run(scenario())


def test_an_agent_action_asking_the_front_end_to_act_is_an_ai_function_call():
    from sessions_app.delivery.outbound import record_outbound_message
    from sessions_app.models import Role
    from tests.factories import SessionFactory

    staff = UserFactory(is_staff=True)
    session = SessionFactory(business_id="B1")
    action = {"type": "function_call", "name": "show_booking_form", "arguments": {"service": "cleaning"}}

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        await socket.reply_to(await socket.push("staff:business:B1", "phx_join", {}))
        await sync_to_async(record_outbound_message)(
            session,
            "Let me open the booking form.",
            role=Role.AGENT,
            metadata={"source": "test", "responseId": "resp_1", "actions": [action]},
        )
        chunk, final, call = await socket.events(3)
        assert chunk[4]["streaming"]["isChunk"] and final[3] == "new_message"
        assert final[4]["actions"] == [action]
        assert call[3] == "ai_function_call"
        assert call[4]["functionData"] == {"name": "show_booking_form", "arguments": {"service": "cleaning"}}
        await socket.close()

    run(scenario())


def test_an_sms_to_a_business_number_reaches_that_business_topic():
    from sessions_app.models import Channel

    Channel.objects.create(kind="sms", address="+15005550006", business_id="B7")
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("staff:business:B7", "phx_join", {})))[
            "status"
        ] == "ok"
        # A user-scoped socket of that business does not get the SMS (it is no chat user's).
        scoped = Socket(token_for(staff), userId="u1")
        assert await scoped.connect()
        assert (await scoped.reply_to(await scoped.push("messages:B7", "phx_join", {})))["status"] == "ok"
        await sync_to_async(send_sms)(Client(), "+15551234567", "Hello business seven")
        received = (await socket.events(1))[0]
        assert received[2:4] == ["staff:business:B7", "message_received"]
        assert received[4]["businessId"] == "B7"
        assert await scoped.nothing_more()
        await socket.close()
        await scoped.close()

    run(scenario())
    assert Session.objects.get().business_id == "B7"


def test_an_api_key_connects_and_a_business_limited_key_stays_in_its_business():
    from sessions_app.api.keys import issue_key, revoke_key

    limited_key, limited = issue_key("crm", business_id="B1")
    _, unlimited = issue_key("ops")

    async def scenario() -> None:
        socket = Socket(limited, userId="u1")
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("messages:B1", "phx_join", {})))["status"] == "ok"
        refused = await socket.reply_to(await socket.push("messages:B2", "phx_join", {}))
        assert refused == {"status": "error", "response": {"reason": "unauthorized"}}
        assert (await socket.reply_to(await socket.push("staff:sessions", "phx_join", {})))[
            "status"
        ] == "error"
        ref = await socket.push("messages:B1", "new_message", {"userId": "u1", "message": "from the CRM"})
        assert (await socket.reply_to(ref))["status"] == "ok"
        await socket.close()
        other = Socket(unlimited, userId="u1")
        assert await other.connect()
        assert (await other.reply_to(await other.push("messages:B2", "phx_join", {})))["status"] == "ok"
        await other.close()

    run(scenario())
    assert Session.objects.get().business_id == "B1"
    revoke_key(limited_key)

    async def revoked() -> None:
        assert not await Socket(limited).connect()

    run(revoked())


def test_an_end_user_may_only_send_as_themselves():
    alice = UserFactory(username="alice")

    async def scenario() -> None:
        socket = Socket(token_for(alice))
        assert await socket.connect()
        await socket.reply_to(await socket.push("messages:B1", "phx_join", {}))
        reply = await socket.reply_to(
            await socket.push("messages:B1", "new_message", {"userId": "bob", "message": "hi"})
        )
        assert reply["status"] == "error"
        assert "themselves" in reply["response"]["fields"]["userId"]
        await socket.close()

    run(scenario())
    assert not Message.objects.exists()


def test_a_sweep_tells_the_staff_topic_once_per_batch():
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from sessions_app.lifecycle.sweep import sweep_sessions
    from tests.factories import SessionFactory

    staff = UserFactory(is_staff=True)
    # Created long ago, swept now: the clock is not held while the sockets run (channels-postgres
    # dates its messages by the wall clock and drops those already expired).
    with time_machine.travel(timezone.now() - timedelta(hours=1), tick=False):
        SessionFactory.create_batch(3)

    async def scenario() -> list[list[Any]]:
        socket = Socket(token_for(staff))
        assert await socket.connect()
        await socket.reply_to(await socket.push("staff:sessions", "phx_join", {}))
        await sync_to_async(sweep_sessions)()
        events = await socket.events(1)
        assert await socket.nothing_more()
        await socket.close()
        return events

    (event,) = run(scenario())
    assert event[3] == "sessions_updated"
    assert event[4] == {"count": 3, "status": "abandoned"}
