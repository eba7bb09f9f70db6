"""Messages we add to a session ourselves (agent replies, staff replies): stored and counted here.

Sending them to the contact's phone (Twilio) is the outbound delivery path; it starts from the
`message_recorded` signal this module fires on commit, so every producer shares it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sessions_app.events import message_recorded
from sessions_app.models import ChannelKind, DeliveryStatus, Direction, Message, Session

# Channels whose outbound messages travel through Twilio's messaging API.
MESSAGING_KINDS = {ChannelKind.SMS, ChannelKind.WHATSAPP}


def record_outbound_message(
    session: Session,
    content: str,
    *,
    role: str,
    in_reply_to: Message | None = None,
    metadata: dict[str, Any] | None = None,
) -> Message:
    """Store a message from our side in `session` and bump its counters, in one transaction."""
    with transaction.atomic():
        now = timezone.now()
        message = Message.objects.create(
            session=session,
            direction=Direction.OUTBOUND,
            role=role,
            content=content,
            in_reply_to=in_reply_to,
            metadata=dict(metadata or {}),
            delivery_status=DeliveryStatus.PENDING if session.channel_kind in MESSAGING_KINDS else "",
            created_at=now,
        )
        Session.objects.filter(pk=session.pk).update(
            message_count=F("message_count") + 1, last_message_at=now, last_activity_at=now, updated_at=now
        )
        transaction.on_commit(
            lambda: message_recorded.send(
                sender=Message,
                session_id=session.pk,
                message_id=message.pk,
                created_session=False,
                reply_owed=False,
            ),
            robust=True,
        )
    return message
