"""What an agent backend is told about a session besides its messages: the system prompt and the
business context the client sent (seed 001's `businessType` and `locationId`)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from sessions_app.models import Session


def system_prompt(session: Session) -> str:
    """The system message for `session`'s agent (AGENT_SYSTEM_PROMPT)."""
    return str(settings.AGENT_SYSTEM_PROMPT)


def business_context(session: Session) -> dict[str, Any]:
    """The session's business context, only the parts it has: `businessId`, `businessType`,
    `locationId`."""
    metadata = session.metadata or {}
    context = {
        "businessId": session.business_id,
        "businessType": str(metadata.get("businessType") or ""),
        "locationId": session.location_id,
    }
    return {key: value for key, value in context.items() if value}


def context_message(session: Session) -> str:
    """`business_context` as the system message a chat-completions request carries ("" when empty)."""
    context = business_context(session)
    if not context:
        return ""
    return "Context of this conversation (JSON): " + json.dumps(context, sort_keys=True)
