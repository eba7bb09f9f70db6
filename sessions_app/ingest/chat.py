"""Chat messages from API clients' users (seed 001's `businessId` + `userId`), over HTTP and the socket."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.contacts import contact_for_external_user
from sessions_app.ingest.rule import InboundMessage, IngestResult, record_inbound_message
from sessions_app.lifecycle.sessions import newest_active_session
from sessions_app.models import ChannelKind, Session, Surface


def chat_user_sessions(business_id: str, user_id: str) -> QuerySet[Session]:
    """A chat client's user's sessions in one business (seed 001's `businessId` + `userId`)."""
    return Session.objects.filter(
        business_id=business_id, contact__business_id=business_id, contact__external_user_id=user_id
    )


def record_chat_message(
    *,
    business_id: str,
    user_id: str,
    text: str,
    source: str,
    named_session_id: Any | None = None,
    within: QuerySet[Session] | None = None,
    owner: Any = None,
    location_id: str = "",
    business_type: str = "",
) -> IngestResult:
    """Seed 001's rule, for every surface that takes its messages (HTTP and the socket).

    The user's first message opens a session; later ones join the session the client names
    (`named_session_id`, which the caller has checked the sender may see) or else the user's newest
    active chat session in that business (among `within`, the sessions the caller may see). A
    closed or abandoned session is never joined: the reuse rule opens a new one.
    """
    preferred = named_session_id
    if preferred is None:
        candidates = chat_user_sessions(business_id, user_id).filter(channel_kind=ChannelKind.API)
        if within is not None:
            candidates = candidates & within
        active = newest_active_session(candidates)
        preferred = active.pk if active else None
    with transaction.atomic():
        contact = contact_for_external_user(business_id, user_id)
        return record_inbound_message(
            channel_for(ChannelKind.API, "", Surface.AGENT_API),
            contact,
            InboundMessage(content=text, metadata={"source": source}),
            session_defaults={
                "business_id": business_id,
                "location_id": location_id,
                "owner": owner,
                "metadata": {"businessType": business_type, "context": {}},
            },
            preferred_session_id=preferred,
        )
