"""Every message that reaches a session, by any path, goes to the sockets that may see it.

Listens to `message_recorded` and `session_status_changed` (fired after commit) and sends one event
to the session's business topic, the session's own topic and the staff topic. Outbound messages
(agent, staff) are `new_message` events shaped as seed 001's client reads an answer; a contact's
own message is `message_received` (the seed's client would otherwise show it as the agent's words).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from channels.layers import get_channel_layer

from sessions_app.models import Direction, Message, Role, Session
from sessions_app.realtime.groups import STAFF_GROUP, business_group, session_group

log = logging.getLogger(__name__)

MESSAGE_TYPE: dict[str, str] = {
    Role.CONTACT: "user",
    Role.AGENT: "agent",
    Role.STAFF: "agent",
    Role.SYSTEM: "system",
}


def message_payload(message: Message, session: Session) -> dict[str, Any]:
    contact = session.contact
    user_id = (contact.external_user_id or contact.phone) if contact else ""
    metadata = message.metadata or {}
    payload: dict[str, Any] = {
        "messageId": str(message.pk),
        "sessionId": str(session.pk),
        "businessId": session.business_id,
        "userId": "agent" if message.role == Role.AGENT else user_id,
        "content": message.content,
        "message": message.content,
        "type": MESSAGE_TYPE.get(message.role, "system"),
        "role": message.role,
        "direction": message.direction,
        "channel": session.channel_kind,
        "timestamp": message.created_at.isoformat(),
        "deliveryStatus": message.delivery_status,
        "metadata": {"source": metadata.get("source", "")},
    }
    if message.role == Role.AGENT:
        payload["responseId"] = metadata.get("responseId") or f"resp_{message.pk}"
        payload["actions"] = metadata.get("actions") or []
        payload["metadata"]["toolsUsed"] = metadata.get("toolsUsed") or []
    return payload


def _groups(session: Session) -> list[str]:
    groups = [session_group(session.pk), STAFF_GROUP]
    if session.business_id:
        groups.append(business_group(session.business_id))
    return groups


def publish(session: Session, event: str, payload: dict[str, Any]) -> None:
    """Send `event` to every topic that shows `session`; never raises (delivery is best effort)."""
    _send(
        _groups(session),
        event,
        payload,
        business_id=session.business_id,
        owner_id=session.owner_id,
        session_id=str(session.pk),
    )


def _send(
    groups: list[str],
    event: str,
    payload: dict[str, Any],
    *,
    business_id: str = "",
    owner_id: int | None = None,
    session_id: str | None = None,
) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    messages = [
        (
            group,
            {
                "type": "relay.event",
                "group": group,
                "event": event,
                "payload": payload,
                "business_id": business_id,
                "owner_id": owner_id,
                "session_id": session_id,
            },
        )
        for group in groups
    ]

    send_many = getattr(layer, "group_send_many_sync", None)  # our layers publish from this thread
    if send_many is not None:
        try:
            send_many(messages)
        except Exception:
            log.exception("Could not broadcast %s for session %s", event, session_id)
        return

    async def send_all() -> None:
        await asyncio.gather(*(layer.group_send(group, message) for group, message in messages))

    # Not awaited: the request that stored the message does not wait for its broadcast. The
    # publisher loop sends in submission order, so events keep the order they were produced in.
    future = asyncio.run_coroutine_threadsafe(send_all(), _publisher_loop())
    future.add_done_callback(lambda done: _log_failure(done, event, session_id))


def _log_failure(done: Any, event: str, session_id: Any) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("Could not broadcast %s for session %s: %r", event, session_id, done.exception())


_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process for publishing from synchronous code.

    `async_to_sync` would start a new loop per call outside an ASGI server (a gunicorn worker, a
    Celery task), and the Redis layer keeps its connections per loop: a new connection per message.
    Keyed by pid, so a process forked after the loop started makes its own.
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="realtime-publisher", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


def publish_chunk(session: Session, response_id: str, index: int, text: str) -> None:
    """One streamed piece of an agent answer, as seed 001's `updateStreamingMessage` reads it."""
    publish(
        session,
        "new_message",
        {
            "responseId": response_id,
            "sessionId": str(session.pk),
            "businessId": session.business_id,
            "message": text,
            "type": "agent",
            "streaming": {"isChunk": True, "index": index},
        },
    )


def broadcast_message(
    message_id: int, message: Message | None = None, session: Session | None = None
) -> None:
    if message is None or session is None:
        message = Message.objects.select_related("session", "session__contact").filter(pk=message_id).first()
        if message is None:
            return
        session = message.session
    payload = message_payload(message, session)
    if message.direction == Direction.OUTBOUND:
        if message.role == Role.AGENT and not (message.metadata or {}).get("streamed"):
            # A backend that does not stream still sends the answer as one chunk first, so clients
            # written for streaming render it the same way.
            publish_chunk(session, payload["responseId"], 0, message.content)
        publish(session, "new_message", payload)
        for action in payload.get("actions", []):
            # An agent asking the front end to act (open a form, show slots...): seed 001's
            # `handleFunctionCall` reads `functionData`.
            if isinstance(action, dict) and action.get("type") == "function_call":
                publish(
                    session,
                    "ai_function_call",
                    {
                        "functionData": action,
                        "sessionId": str(session.pk),
                        "responseId": payload["responseId"],
                    },
                )
    else:
        publish(session, "message_received", payload)


def on_message_recorded(
    sender: Any,
    message_id: int,
    message: Message | None = None,
    session: Session | None = None,
    **kwargs: Any,
) -> None:
    broadcast_message(message_id, message, session)


def on_status_changed(sender: Any, session_id: Any, from_status: str, to_status: str, **kwargs: Any) -> None:
    session = Session.objects.filter(pk=session_id).first()
    if session is not None:
        publish(
            session,
            "session_updated",
            {
                "sessionId": str(session.pk),
                "businessId": session.business_id,
                "status": to_status,
                "previousStatus": from_status,
            },
        )


def on_sessions_swept(sender: Any, count: int, to_status: str, **kwargs: Any) -> None:
    """The lifecycle sweep moved `count` sessions: one event for the staff pages to refresh."""
    _send([STAFF_GROUP], "sessions_updated", {"count": count, "status": to_status})
