"""The socket seed 001's client connects to: `/socket/websocket`, Phoenix V2 JSON frames.

Topics: `messages:{businessId}` (the seed's), `session:{sessionId}` (one conversation) and
`staff:sessions` (every session, for the staff UI). A frame we cannot use gets a `phx_reply` with
status `error` and a reason; the socket stays open.
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
from sessions_app.realtime.auth import Principal, principal_for_token, principal_for_user
from sessions_app.realtime.groups import STAFF_GROUP, business_group, session_group

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
MAX_MESSAGE_LENGTH = 4000


class TopicRefused(Exception):
    pass


class PhoenixSocketConsumer(AsyncWebsocketConsumer):
    principal: Principal
    # topic -> (join_ref, group)
    joined: dict[str, tuple[str | None, str]]

    async def connect(self) -> None:
        params = parse_qs(self.scope.get("query_string", b"").decode())
        token = (params.get("token") or [""])[0]
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
        self.principal = principal
        self.joined = {}
        await self.accept()

    def _same_origin(self) -> bool:
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin", b"").decode()
        host = headers.get(b"host", b"").decode()
        return bool(origin) and urlsplit(origin).netloc == host

    async def disconnect(self, code: int) -> None:
        for _, group in getattr(self, "joined", {}).values():
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
            group = await self.group_for_topic(frame.topic)
        except TopicRefused as exc:
            await self.reply(frame, "error", {"reason": str(exc)})
            return
        previous = self.joined.get(frame.topic)
        if previous is None:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined[frame.topic] = (frame.join_ref, group)
        await self.reply(frame, "ok", {})

    async def leave(self, frame: protocol.Frame) -> None:
        joined = self.joined.pop(frame.topic, None)
        if joined is not None:
            await self.channel_layer.group_discard(joined[1], self.channel_name)
        await self.reply(frame, "ok", {})
        await self.send_frame(
            protocol.encode(frame.join_ref, frame.join_ref, frame.topic, protocol.PHX_CLOSE, {})
        )

    async def group_for_topic(self, topic: str) -> str:
        kind, _, key = topic.partition(":")
        if kind == "messages":
            if not key or len(key) > MAX_ID_LENGTH:
                raise TopicRefused("messages topics are messages:{businessId}")
            if not self.principal.may_join_business(key):
                raise TopicRefused("unauthorized")
            return business_group(key)
        if kind == "session":
            session = await database_sync_to_async(_session_or_none)(key)
            if session is None or not self.principal.may_see(session.business_id, session.owner_id):
                raise TopicRefused("unauthorized or unknown session")
            return session_group(session.pk)
        if topic == "staff:sessions":
            if self.principal.kind != "staff":
                raise TopicRefused("unauthorized")
            return STAFF_GROUP
        raise TopicRefused("unmatched topic")

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
            if named is None or not self.principal.may_see(named.business_id, named.owner_id):
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

    async def relay_event(self, message: dict[str, Any]) -> None:
        """A broadcast from `publish.publish`, once per group this socket is in."""
        if not self.principal.may_see(message.get("business_id", ""), message.get("owner_id")):
            return
        for topic, (_, group) in list(self.joined.items()):
            if group == message["group"]:
                await self.send_frame(
                    protocol.encode(None, None, topic, message["event"], message["payload"])
                )


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _session_or_none(key: str) -> Session | None:
    if not _is_uuid(key):
        return None
    try:
        return Session.objects.filter(pk=key).first()
    except ValidationError:
        return None
