"""A chat message pushed over the socket: the same path as seed 001's POST /agent/api/messages."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from sessions_app.ingest import InboundMessage, IngestResult, channel_for, record_inbound_message
from sessions_app.models import ChannelKind, Contact


def contact_for_api_user(business_id: str, user_id: str) -> Contact:
    contact = Contact.objects.filter(business_id=business_id, external_user_id=user_id).first()
    if contact is not None:
        return contact
    try:
        with transaction.atomic():
            return Contact.objects.create(business_id=business_id, external_user_id=user_id)
    except IntegrityError:
        return Contact.objects.get(business_id=business_id, external_user_id=user_id)


def record_chat_message(
    *,
    business_id: str,
    user_id: str,
    text: str,
    session_id: str | None = None,
    owner_id: int | None = None,
    source: str = "websocket",
) -> IngestResult:
    with transaction.atomic():
        channel = channel_for(ChannelKind.API, "")
        contact = contact_for_api_user(business_id, user_id)
        return record_inbound_message(
            channel,
            contact,
            InboundMessage(content=text, metadata={"source": source}),
            session_defaults={
                "business_id": business_id,
                "owner_id": owner_id,
                "title": f"Chat with {user_id}",
                "metadata": {"context": {}},
            },
            preferred_session_id=session_id,
        )
