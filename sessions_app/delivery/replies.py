"""Agent replies: every inbound message that expects an answer gets exactly one.

An inbound message is stored with `reply_state = owed`, and once it commits the code that stored it
tells the reply drain (delivery/reply_drain.py), which claims owed messages in the order they came;
recovery and retries queue `produce_reply_task` for one message. Producing the reply claims it with a
conditional UPDATE (owed → claimed), so two workers, or a task that runs twice, never both answer;
the reply row's one-to-one link to the inbound message makes a second reply impossible even then.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from sessions_app.agents import AgentAnswer, AgentError, StreamingAgentBackend, get_backend
from sessions_app.delivery.outbound import record_outbound_message
from sessions_app.models import Message, ReplyState, Role, Session
from sessions_app.realtime.publish import publish_chunk

log = logging.getLogger(__name__)
HISTORY_LENGTH = 20


class ReplyDeferred(Exception):
    """The agent failed this time and the reply is owed again; try once more after a pause."""

    def __init__(self, attempt: int, reason: str) -> None:
        super().__init__(reason)
        self.attempt = attempt


def claim(inbound_id: int) -> bool:
    """owed → claimed (or take over a claim whose lease ran out), as one conditional UPDATE."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.TASK_LEASE)
    return bool(
        Message.objects.filter(pk=inbound_id)
        .filter(
            Q(reply_state=ReplyState.OWED) | Q(reply_state=ReplyState.CLAIMED, reply_claimed_at__lt=stale)
        )
        .update(reply_state=ReplyState.CLAIMED, reply_claimed_at=now, reply_attempts=F("reply_attempts") + 1)
    )


def produce_reply(inbound_id: int) -> Message | None:
    """Answer the inbound message `inbound_id` once; returns the reply (also when it already existed).

    Raises `ReplyDeferred` when the agent failed but another attempt is allowed; after the last
    attempt (or a failure that retrying cannot fix) the message is marked `failed` with the reason.
    """
    if not claim(inbound_id):
        return Message.objects.filter(in_reply_to_id=inbound_id).first()
    return answer_claimed(inbound_id)


def answer_claimed(inbound_id: int) -> Message | None:
    """Answer the inbound message `inbound_id`, which this worker has just claimed (`claim`, or the
    reply drain's claim); raises `ReplyDeferred` and marks failures as `produce_reply` says."""
    inbound = Message.objects.select_related("session", "session__channel").get(pk=inbound_id)
    session = inbound.session
    history = list(reversed(session.messages.order_by("-created_at", "-id")[:HISTORY_LENGTH]))
    backend = get_backend()
    try:
        if settings.AGENT_STREAM and isinstance(backend, StreamingAgentBackend) and backend.can_stream():
            answer = _streamed_answer(backend, session, history)
        else:
            answer = backend.answer(session, history)
    except AgentError as exc:
        _agent_failed(inbound, exc)
        return None
    try:
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
                    "streamed": answer.streamed,
                },
            )
            Message.objects.filter(pk=inbound_id).update(reply_state=ReplyState.DONE, reply_error="")
    except IntegrityError:
        # A worker whose lease had run out finished first; its reply stands, this one is dropped.
        log.warning("Message %s was answered by another worker meanwhile", inbound_id)
        return Message.objects.filter(in_reply_to_id=inbound_id).first()
    log.info("Replied to message %s in session %s", inbound_id, session.pk)
    return reply


def _streamed_answer(backend: StreamingAgentBackend, session: Session, history: list[Message]) -> AgentAnswer:
    """The answer as the backend generates it; each piece goes out to the session's sockets at once,
    and the stored reply is the complete text, once."""
    response_id = f"resp_{uuid.uuid4().hex[:16]}"
    pieces = []
    for index, piece in enumerate(backend.stream(session, history)):
        pieces.append(piece)
        publish_chunk(session, response_id, index, piece)
    text = "".join(pieces).strip()
    if not text:
        raise AgentError("the agent's stream held only white space")
    return AgentAnswer(text=text, source=backend.source, response_id=response_id, streamed=True)


def _agent_failed(inbound: Message, exc: AgentError) -> None:
    attempt = inbound.reply_attempts
    reason = f"attempt {attempt}: {exc}"
    if exc.retryable and attempt < settings.TASK_MAX_ATTEMPTS:
        Message.objects.filter(pk=inbound.pk, reply_state=ReplyState.CLAIMED).update(
            reply_state=ReplyState.OWED, reply_error=reason
        )
        log.warning("Reply to message %s failed (%s); will try again", inbound.pk, reason)
        raise ReplyDeferred(attempt, reason)
    Message.objects.filter(pk=inbound.pk, reply_state=ReplyState.CLAIMED).update(
        reply_state=ReplyState.FAILED, reply_error=reason
    )
    log.error("Reply to message %s failed for good (%s)", inbound.pk, reason)


def recover_owed_replies(limit: int = 500) -> list[int]:
    """Inbound messages whose reply never reached a worker (broker down) or whose worker vanished.

    Owed for longer than the grace period and not attempted within the lease (so a retry waiting
    out its backoff is left to it), or claimed by a worker whose lease ran out.
    """
    now = timezone.now()
    grace = now - timedelta(seconds=settings.TASK_RECOVERY_GRACE)
    stale = now - timedelta(seconds=settings.TASK_LEASE)
    owed = Q(reply_state=ReplyState.OWED, created_at__lt=grace) & (
        Q(reply_claimed_at__isnull=True) | Q(reply_claimed_at__lt=stale)
    )
    lost = Q(reply_state=ReplyState.CLAIMED, reply_claimed_at__lt=stale)
    return list(
        Message.objects.filter(owed | lost).order_by("created_at").values_list("pk", flat=True)[:limit]
    )
