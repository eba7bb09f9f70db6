"""The socket seed 001's client connects to: `/socket/websocket`, Phoenix V2 JSON frames.

Topics: `messages:{businessId}` (the seed's: one user's sessions in that business),
`session:{sessionId}` (one conversation), and for staff only `staff:sessions` (every session, for the
staff UI) and `staff:business:{businessId}` (the business-wide feed). Which user a socket sees is
decided in `realtime/auth.py`. A frame we cannot use gets a `phx_reply` with status `error` and a
reason; the socket stays open.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from sessions_app.ingest.chat import chat_user_sessions, record_chat_message
from sessions_app.models import Session
from sessions_app.realtime import protocol
from sessions_app.realtime.auth import (
    EVERYTHING,
    Audience,
    Principal,
    Refused,
    principal_for_token,
    principal_for_user,
)
from sessions_app.realtime.groups import STAFF_GROUP, business_group, session_group

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
MAX_MESSAGE_LENGTH = 4000


class PhoenixSocketConsumer(AsyncWebsocketConsumer):
    principal: Principal
    # topic -> (join_ref, group, whose sessions' events it relays)
    joined: dict[str, tuple[str | None, str, Audience]]
    # the socket's `userId` param, or why it cannot be used
    scope_problem: str

    async def connect(self) -> None:
        params = parse_qs(self.scope.get("query_string", b"").decode())
        token = (params.get("token") or [""])[0]
        requested_user = (params.get("userId") or [""])[0]
        try:
            principal = await database_sync_to_async(principal_for_token)(token) if token else None
        except Exception:  # e.g. the database is unreachable: refuse, the client retries
            log.exception("Socket refused: could not check its token")
            await self.close(code=1011)
            return
        if principal is None and self._same_origin():
            # A login cookie is ambient: only a page of our own may use it (no cross-site hijacking).
            principal = principal_for_user(self.scope.get("user"))
        if principal is None:
            log.info("Socket refused: no valid token or login")
            await self.close(code=4401)
            return
        self.scope_problem = ""
        if len(requested_user) > MAX_ID_LENGTH:
            self.scope_problem = f"the userId param is at most {MAX_ID_LENGTH} characters"
        else:
            try:
                principal = principal.scoped_to(requested_user)
            except Refused as exc:
                self.scope_problem = str(exc)
        self.principal = principal
        self.joined = {}
        await self.accept()

    def _same_origin(self) -> bool:
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode()
        host = headers.get(b"host", b"").decode()
        return bool(origin) and urlsplit(origin).netloc == host

    async def disconnect(self, code: int) -> None:
        for _, group, _ in getattr(self, "joined", {}).values():
            await self.channel_layer.group_discard(group, self.channel_name)

    async def send_frame(self, text: str) -> None:
        await self.send(text_data=text)

    async def reply(self, frame: protocol.Frame, status: str, response: dict[str, Any]) -> None:
        await self.send_frame(protocol.reply(frame.join_ref, frame.ref, frame.topic, status, response))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_frame(
                protocol.reply(
                    None, None, protocol.PHOENIX_TOPIC, "error", {"reason": "binary frames are not supported"}
                )
            )
            return
        try:
            frame = protocol.decode(text_data)
        except protocol.BadFrame as exc:
            join_ref, ref, topic = protocol.salvage_refs(text_data)
            await self.send_frame(
                protocol.reply(join_ref, ref, topic, "error", {"reason": f"bad frame: {exc}"})
            )
            return
        try:
            await self.dispatch_frame(frame)
        except Exception:
            log.exception("Socket frame %s on %s failed", frame.event, frame.topic)
            await self.reply(frame, "error", {"reason": "internal error"})

    async def dispatch_frame(self, frame: protocol.Frame) -> None:
        if frame.topic == protocol.PHOENIX_TOPIC:
            if frame.event == protocol.HEARTBEAT:
                await self.reply(frame, "ok", {})
            else:
                await self.reply(frame, "error", {"reason": f"unknown event {frame.event!r} on phoenix"})
        elif frame.event == protocol.PHX_JOIN:
            await self.join(frame)
        elif frame.event == protocol.PHX_LEAVE:
            await self.leave(frame)
        elif frame.topic not in self.joined:
            await self.reply(frame, "error", {"reason": "unmatched topic"})
        elif frame.event == "new_message" and frame.topic.startswith("messages:"):
            await self.new_message(frame)
        else:
            await self.reply(frame, "error", {"reason": f"unknown event {frame.event!r}"})

    async def join(self, frame: protocol.Frame) -> None:
        try:
            group, audience = await self.group_for_topic(frame.topic)
        except Refused as exc:
            await self.reply(frame, "error", {"reason": str(exc)})
            return
        previous = self.joined.get(frame.topic)
        if previous is None:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined[frame.topic] = (frame.join_ref, group, audience)
        await self.reply(frame, "ok", {})

    async def leave(self, frame: protocol.Frame) -> None:
        joined = self.joined.pop(frame.topic, None)
        if joined is not None:
            await self.channel_layer.group_discard(joined[1], self.channel_name)
        await self.reply(frame, "ok", {})
        await self.send_frame(
            protocol.encode(frame.join_ref, frame.join_ref, frame.topic, protocol.PHX_CLOSE, {})
        )

    async def group_for_topic(self, topic: str) -> tuple[str, Audience]:
        kind, _, key = topic.partition(":")
        if topic == "staff:sessions":
            if self.principal.kind != "staff":
                raise Refused("unauthorized")
            return STAFF_GROUP, EVERYTHING
        if kind == "staff" and key.startswith("business:"):
            business_id = key.partition(":")[2]
            if not business_id or len(business_id) > MAX_ID_LENGTH:
                raise Refused("the business-wide topic is staff:business:{businessId}")
            if self.principal.kind != "staff":
                raise Refused("unauthorized: the business-wide feed is for staff")
            return business_group(business_id), EVERYTHING
        if kind not in ("messages", "session"):
            raise Refused("unmatched topic")
        if self.scope_problem:
            raise Refused(self.scope_problem)
        if kind == "messages":
            if not key or len(key) > MAX_ID_LENGTH:
                raise Refused("messages topics are messages:{businessId}")
            return business_group(key), self.principal.audience_in_business(key)
        session_id, audience = await database_sync_to_async(_session_audience)(self.principal, key)
        return session_group(session_id), audience

    async def new_message(self, frame: protocol.Frame) -> None:
        business_id = frame.topic.partition(":")[2]
        payload = frame.payload
        problems = {}
        text = payload.get("message")
        user_id = payload.get("userId")
        session_id = payload.get("sessionId")
        if not isinstance(text, str) or not text.strip():
            problems["message"] = "required, a non-empty string"
        elif len(text) > MAX_MESSAGE_LENGTH:
            problems["message"] = f"at most {MAX_MESSAGE_LENGTH} characters"
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_ID_LENGTH:
            problems["userId"] = f"required, a string of at most {MAX_ID_LENGTH} characters"
        if payload.get("businessId") not in (None, business_id):
            problems["businessId"] = "must match the topic's business"
        if session_id is not None and not _is_uuid(session_id):
            problems["sessionId"] = "must be a session id this server gave out"
        if self.principal.kind == "user" and user_id != self.principal.username:
            problems["userId"] = "a user may only send as themselves (userId = their username)"
        elif self.principal.chat_user and user_id != self.principal.chat_user:
            problems["userId"] = f"this socket is scoped to userId {self.principal.chat_user!r}"
        if problems:
            await self.reply(frame, "error", {"reason": "invalid message", "fields": problems})
            return
        result = await database_sync_to_async(self._record)(business_id, str(user_id), str(text), session_id)
        if result is None:
            await self.reply(
                frame, "error", {"reason": "unknown session", "fields": {"sessionId": "not found"}}
            )
            return
        await self.reply(
            frame, "ok", {"sessionId": str(result.session.pk), "messageId": str(result.message.pk)}
        )

    def _record(self, business_id: str, user_id: str, text: str, session_id: str | None) -> Any:
        """The same path as seed 001's POST /agent/api/messages; None for a session it may not use."""
        owner = None
        if self.principal.kind == "user" and self.principal.user_id is not None:
            owner = get_user_model().objects.filter(pk=self.principal.user_id).first()
        if session_id is not None:
            named = chat_user_sessions(business_id, user_id).filter(pk=session_id).first()
            if named is None or not self.principal.visible_sessions().filter(pk=named.pk).exists():
                return None
        return record_chat_message(
            business_id=business_id,
            user_id=user_id,
            text=text,
            source="websocket",
            named_session_id=session_id,
            within=self.principal.visible_sessions(),
            owner=owner,
        )

    async def dispatch(self, message: dict[str, Any]) -> None:
        # A broadcast is relayed without channels' `aclose_old_connections` before it: that is a hop
        # to a worker thread for every event at every socket, and relaying reads no database. It
        # was most of a socket process's CPU under fan-out (docs/realtime.md). Every other message
        # (frames from the client, connect, disconnect) takes channels' own path.
        if message.get("type") == "relay.event":
            await self.relay_event(message)
        else:
            await super().dispatch(message)

    async def relay_event(self, message: dict[str, Any]) -> None:
        """A broadcast from `publish.publish`, once per group this socket is in."""
        business_id, owner_id = message.get("business_id", ""), message.get("owner_id")
        chat_user = message.get("chat_user", "")
        for topic, (_, group, audience) in list(self.joined.items()):
            if group == message["group"] and audience.admits(business_id, owner_id, chat_user):
                await self.send_frame(
                    protocol.push(message.get("key"), topic, message["event"], message["payload"])
                )


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _session_audience(principal: Principal, key: str) -> tuple[uuid.UUID, Audience]:
    """The session `key` names and what `principal` sees of it, or Refused."""
    session = None
    if _is_uuid(key):
        try:
            session = Session.objects.select_related("contact").filter(pk=key).first()
        except ValidationError:
            session = None
    if session is None:
        raise Refused("unauthorized or unknown session")
    return session.pk, principal.audience_of_session(session)
