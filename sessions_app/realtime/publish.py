"""Every message that reaches a session, by any path, goes to the sockets that may see it.

The code that stores a message or changes a status calls these once its transaction commits
(`transaction.on_commit`): one event to the session's business topic, the session's own topic and
the staff topic. Outbound messages
(agent, staff) are `new_message` events shaped as seed 001's client reads an answer; a contact's
own message is `message_received` (the seed's client would otherwise show it as the agent's words).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
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


def _groups(session: Session, *, opened: bool = False) -> list[str]:
    # A session this very change opened has no socket on its own topic: joining one needs the
    # session's id, which only this transaction knew until it committed a moment ago.
    groups = [STAFF_GROUP] if opened else [session_group(session.pk), STAFF_GROUP]
    if session.business_id:
        groups.append(business_group(session.business_id))
    return groups


def chat_user_of(session: Session) -> str:
    """The seed 001 `userId` whose session this is ("" for SMS and other contacts of no business)."""
    contact = session.contact
    # external_user_id first: a phone contact has none, and the inbound path loads it without its
    # business (a deferred field whose read would cost a query per message).
    if contact is None or not contact.external_user_id or contact.business_id != session.business_id:
        return ""
    return contact.external_user_id


def publish(session: Session, event: str, payload: dict[str, Any], *, opened: bool = False) -> None:
    """Send `event` to every topic that shows `session`; never raises (delivery is best effort).
    The event carries whose session it is; each socket's topics relay only what they may show
    (`realtime/auth.py`). `opened`: the change that causes the event opened the session (its own
    topic is left out: nobody can have joined it yet)."""
    _send(
        _groups(session, opened=opened),
        event,
        payload,
        business_id=session.business_id,
        owner_id=session.owner_id,
        chat_user=chat_user_of(session),
        session_id=str(session.pk),
    )


def _send(
    groups: list[str],
    event: str,
    payload: dict[str, Any],
    *,
    business_id: str = "",
    owner_id: int | None = None,
    chat_user: str = "",
    session_id: str | None = None,
) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    key = uuid.uuid4().hex  # one per broadcast: each socket process encodes its frame once per topic
    messages = [
        (
            group,
            {
                "type": "relay.event",
                "key": key,
                "group": group,
                "event": event,
                "payload": payload,
                "business_id": business_id,
                "owner_id": owner_id,
                "chat_user": chat_user,
                "session_id": session_id,
            },
        )
        for group in groups
    ]

    _publisher().publish(layer, messages, event, session_id)


# How long a broadcast may hold up the code that publishes (a Redis that does not answer).
PUBLISH_TIMEOUT = 1.0


class _Publisher:
    """One event loop per process, run by the thread that publishes, one publish at a time.

    Synchronous code (a webhook, a worker task, a socket's own message stored in a thread) publishes
    through the layers' async API. `async_to_sync` would start a new loop per call outside an ASGI
    server, and the layers keep their connections per loop: a new connection per message. So the
    process keeps one loop, and the publishing thread runs it for the length of its publish, under a
    lock: no second thread to wake for each message. Waking a publisher thread once per webhook cost
    0.75-0.9 ms of CPU per request, against 0.26-0.32 ms for the publishes themselves
    (docs/benchmarks.md). The cost: the caller waits for its publishes (one round trip; at most
    PUBLISH_TIMEOUT when the layer's server does not answer). Events one thread publishes keep their
    order: a reply's chunks never overtake the message they answer.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()

    def run(self, coroutine: Any, timeout: float) -> Any:
        # `asyncio.timeout`, not `wait_for`: wait_for wraps the coroutine in a task of its own, 0.8 %
        # of a webhook's instructions (docs/benchmarks.md, 2026-12-04).
        async def bounded() -> Any:
            async with asyncio.timeout(timeout):
                return await coroutine

        with self.lock:
            return self.loop.run_until_complete(bounded())

    def publish(
        self, layer: Any, messages: list[tuple[str, dict[str, Any]]], event: str, session_id: Any
    ) -> None:
        async def send() -> None:
            for group, message in messages:
                await layer.group_send(group, message)

        try:
            self.run(send(), PUBLISH_TIMEOUT)
        except Exception as exc:  # best effort: the change is stored whatever the broadcast does
            log.error("Could not broadcast %s for session %s: %r", event, session_id, exc)


_publisher_lock = threading.Lock()
_current: _Publisher | None = None


def _publisher() -> _Publisher:
    """This process's publisher; a process forked after it started makes its own."""
    global _current
    with _publisher_lock:
        if _current is None or _current.pid != os.getpid():
            _current = _Publisher()
        return _current


def run_on_publisher(coroutine: Any, timeout: float = 10) -> Any:
    """Run `coroutine` on this process's publisher loop and wait for its result (tests, shutdown)."""
    return _publisher().run(coroutine, timeout)


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


def message_event(message: Message, session: Session, *, opened: bool = False) -> None:
    """`message`, stored in `session`, to the session's sockets: a contact's own message as
    `message_received`, ours as `new_message` (an agent's answer also as one chunk first, and each
    function call it asks the front end for as `ai_function_call`). `opened`: the message opened the
    session (one broadcast fewer: 4.8 % of an inbound SMS's instructions when it opens its session,
    docs/realtime.md)."""
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
                        "functionData": {k: v for k, v in action.items() if k != "type"},
                        "sessionId": str(session.pk),
                        "responseId": payload["responseId"],
                    },
                )
    else:
        publish(session, "message_received", payload, opened=opened)


def status_changed(session_id: Any, from_status: str, to_status: str) -> None:
    """A session's status changed (`lifecycle.transitions.transition_session`)."""
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


def sessions_swept(count: int, to_status: str) -> None:
    """The lifecycle sweep moved `count` sessions: one event for the staff pages to refresh."""
    _send([STAFF_GROUP], "sessions_updated", {"count": count, "status": to_status})


def sessions_reshaped(event: str, session_ids: list[Any], payload: dict[str, Any]) -> None:
    """Staff merged or split sessions (`lifecycle/boundaries.py`): messages moved between them.
    Each session's topics hear `event` (`session_merged`, `session_split`) with its new counts."""
    for session in Session.objects.filter(pk__in=session_ids):
        publish(
            session,
            event,
            {
                **payload,
                "sessionId": str(session.pk),
                "businessId": session.business_id,
                "status": session.status,
                "messageCount": session.message_count,
            },
        )
