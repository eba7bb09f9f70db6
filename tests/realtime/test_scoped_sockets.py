"""Scoped sockets: a browser connects with a socket token its service minted for one user, and every
socket that is not staff's sees one user's sessions only (the issue's "Scoped sockets")."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from sessions_app.api.keys import issue_key, revoke_key
from sessions_app.ingest.chat import chat_user_sessions, record_chat_message
from tests.factories import UserFactory
from tests.realtime.test_socket import Socket, clean_layer, run, token_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "channels_postgres"])
__all__ = ["clean_layer"]  # each test here runs on both channel layers too


def mint(key: str, **body: Any) -> Any:
    return Client().post(
        "/agent/api/socket-token",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def say(business_id: str, user_id: str, text: str) -> str:
    result = record_chat_message(business_id=business_id, user_id=user_id, text=text, source="test")
    return str(result.session.pk)


async def rest(socket: Socket) -> list[list[Any]]:
    """Whatever else arrives before the socket goes quiet."""
    frames = []
    while not await socket.nothing_more():
        frames.append(await socket.receive())
    return frames


async def events_until(socket: Socket, content: str) -> list[list[Any]]:
    """Events up to and including the agent's whole answer to the message `content`."""
    seen: list[list[Any]] = []
    asked = False
    while True:
        (frame,) = await socket.events(1)
        seen.append(frame)
        asked = asked or (frame[3] == "message_received" and frame[4]["content"] == content)
        if asked and frame[3] == "new_message" and "streaming" not in frame[4]:
            return seen


def test_a_minted_token_answers_token_and_expiry_and_its_socket_sees_only_that_user():
    _, key = issue_key("crm", business_id="B1")
    now = timezone.now()
    response = mint(key, businessId="B1", userId="u1")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=4, seconds=59) <= expires - now <= timedelta(minutes=5, seconds=1)
    other = say("B1", "u2", "someone else's words")
    mine = say("B1", "u1", "earlier words of mine")

    async def scenario() -> list[list[Any]]:
        socket = Socket(body["token"], businessId="B1", userId="u1")
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("messages:B1", "phx_join", {})))["status"] == "ok"
        refused = await socket.reply_to(await socket.push("messages:B2", "phx_join", {}))
        assert refused["status"] == "error" and "'B1'" in refused["response"]["reason"]
        for topic in ("staff:sessions", "staff:business:B1"):
            assert (await socket.reply_to(await socket.push(topic, "phx_join", {})))["status"] == "error"
        await sync_to_async(say)("B1", "u2", "not for u1")
        await sync_to_async(say)("B1", "u1", "for u1")
        seen = await events_until(socket, "for u1")
        seen += await rest(socket)
        # It may send only as its user.
        reply = await socket.reply_to(
            await socket.push("messages:B1", "new_message", {"userId": "u2", "message": "as u2"})
        )
        assert reply["status"] == "error" and "u1" in reply["response"]["fields"]["userId"]
        assert (await socket.reply_to(await socket.push(f"session:{other}", "phx_join", {})))[
            "status"
        ] == "error"
        assert (await socket.reply_to(await socket.push(f"session:{mine}", "phx_join", {})))["status"] == "ok"
        await socket.close()
        return seen

    seen = run(scenario())
    assert {frame[4].get("sessionId") for frame in seen} == {mine}, seen
    assert "not for u1" not in json.dumps(seen)


def test_a_socket_token_connects_for_five_minutes_and_not_after_its_key_is_revoked():
    row, key = issue_key("crm")
    with time_machine.travel(timezone.now() - timedelta(minutes=5, seconds=5), tick=False):
        stale = mint(key, businessId="B1", userId="u1").json()["token"]
    with time_machine.travel(timezone.now() - timedelta(minutes=4, seconds=50), tick=False):
        fresh = mint(key, businessId="B1", userId="u1").json()["token"]
    forged = fresh[:-2] + ("AA" if not fresh.endswith("AA") else "BB")

    async def scenario() -> None:
        assert not await Socket(stale).connect()
        assert not await Socket(forged).connect()
        socket = Socket(fresh)
        assert await socket.connect()
        await socket.close()

    run(scenario())
    revoke_key(row)

    async def revoked() -> None:
        assert not await Socket(fresh).connect()

    run(revoked())


def test_minting_needs_a_service_key_and_names_bad_fields():
    alice = UserFactory(username="alice")
    _, limited = issue_key("b1-only", business_id="B1")
    assert mint(token_for(alice), businessId="B1", userId="alice").status_code == 403
    unauthenticated = Client().post("/agent/api/socket-token", data={}, content_type="application/json")
    assert unauthenticated.status_code == 401
    missing = mint(limited, businessId="B1")
    assert missing.status_code == 400 and "userId" in json.dumps(missing.json())
    reserved = mint(limited, businessId="@alice", userId="alice")
    assert reserved.status_code == 400 and "businessId" in json.dumps(reserved.json())
    assert mint(limited, businessId="B2", userId="u1").status_code == 403


def test_a_bare_api_key_joins_only_with_a_user_id_param_and_sees_only_that_user():
    _, key = issue_key("crm")

    async def scenario() -> list[list[Any]]:
        bare = Socket(key)
        assert await bare.connect()
        refused = await bare.reply_to(await bare.push("messages:B1", "phx_join", {}))
        assert refused["status"] == "error" and "userId param" in refused["response"]["reason"]
        refused = await bare.reply_to(await bare.push("staff:business:B1", "phx_join", {}))
        assert refused["status"] == "error"
        await bare.close()
        socket = Socket(key, businessId="B1", userId="u1")
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("messages:B1", "phx_join", {})))["status"] == "ok"
        await sync_to_async(say)("B1", "u2", "not for u1")
        await sync_to_async(say)("B1", "u1", "for u1")
        seen = await events_until(socket, "for u1")
        seen += await rest(socket)
        await socket.close()
        return seen

    seen = run(scenario())
    assert "not for u1" not in json.dumps(seen)
    u1_session = chat_user_sessions("B1", "u1").get()
    assert {frame[4].get("sessionId") for frame in seen} == {str(u1_session.pk)}, seen


def test_a_users_jwt_socket_cannot_ask_for_another_user_and_staff_get_the_business_feed():
    alice = UserFactory(username="alice")
    staff = UserFactory(username="boss", is_staff=True)

    async def scenario() -> None:
        socket = Socket(token_for(alice), userId="bob")
        assert await socket.connect()
        refused = await socket.reply_to(await socket.push("messages:B1", "phx_join", {}))
        assert refused["status"] == "error" and "'alice'" in refused["response"]["reason"]
        await socket.close()
        boss = Socket(token_for(staff))
        assert await boss.connect()
        refused = await boss.reply_to(await boss.push("messages:B1", "phx_join", {}))
        assert "staff:business:B1" in refused["response"]["reason"]
        assert (await boss.reply_to(await boss.push("staff:business:B1", "phx_join", {})))["status"] == "ok"
        await sync_to_async(say)("B1", "u2", "u2 here")
        await sync_to_async(say)("B1", "u1", "u1 here")
        seen = await events_until(boss, "u1 here")
        assert "u2 here" in json.dumps(seen)
        await boss.close()

    run(scenario())
