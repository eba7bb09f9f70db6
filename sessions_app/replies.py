"""Agent replies: every inbound message that expects an answer gets exactly one.

An inbound message is stored with `reply_state = owed`. Producing the reply claims it with a
conditional UPDATE (owed → claimed), so two workers, or a task that runs twice, never both answer;
the reply row's one-to-one link to the inbound message makes a second reply impossible even then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app.agents import get_backend
from sessions_app.models import Message, ReplyState, Role
from sessions_app.outbound import record_outbound_message

log = logging.getLogger(__name__)
HISTORY_LENGTH = 20


def schedule_reply(message_id: int) -> None:
    """Arrange for the reply owed to `message_id` (called after the inbound message committed).

    Produced right away for now; the task queue takes this over so that slow agents never hold up
    the request that stored the message.
    """
    produce_reply(message_id)


def produce_reply(inbound_id: int) -> Message | None:
    """Answer the inbound message `inbound_id` once; returns the reply (also when it already existed)."""
    claimed = Message.objects.filter(pk=inbound_id, reply_state=ReplyState.OWED).update(
        reply_state=ReplyState.CLAIMED, reply_claimed_at=timezone.now()
    )
    if not claimed:
        return Message.objects.filter(in_reply_to_id=inbound_id).first()
    inbound = Message.objects.select_related("session", "session__channel").get(pk=inbound_id)
    session = inbound.session
    history = list(reversed(session.messages.order_by("-created_at", "-id")[:HISTORY_LENGTH]))
    answer = get_backend().answer(session, history)
    with transaction.atomic():
        reply = record_outbound_message(
            session,
            answer.text,
            role=Role.AGENT,
            in_reply_to=inbound,
            metadata={
                "source": answer.source,
                "toolsUsed": answer.tools_used,
                "responseId": answer.response_id,
                "actions": answer.actions,
            },
        )
        Message.objects.filter(pk=inbound_id).update(reply_state=ReplyState.DONE)
    log.info("Replied to message %s in session %s", inbound_id, session.pk)
    return reply


def wait_for_reply(inbound_id: int, timeout: float) -> Message | None:
    """The reply to `inbound_id`, waiting up to `timeout` seconds for it to be stored."""
    deadline = time.monotonic() + timeout
    while True:
        reply = Message.objects.filter(in_reply_to_id=inbound_id).first()
        if reply is not None or time.monotonic() >= deadline:
            return reply
        time.sleep(0.05)


def on_message_recorded(sender: Any, message_id: int, reply_owed: bool, **kwargs: Any) -> None:
    if reply_owed:
        schedule_reply(message_id)
