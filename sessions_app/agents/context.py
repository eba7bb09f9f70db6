"""What an agent backend is told about a session besides its messages: the system prompt and the
business context the client sent (seed 001's `businessType` and `locationId`)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from sessions_app.models import Character, Session


def character_of(session: Session) -> Character | None:
    """The seed 004 persona of a character session (`agent_id` is its `config_id`), if staff made one."""
    if not session.agent_id:
        return None
    return Character.objects.filter(config_id=session.agent_id).first()


def system_prompt(session: Session) -> str:
    """The system message for `session`'s agent: its character's prompt, else AGENT_SYSTEM_PROMPT."""
    character = character_of(session)
    if character is not None and character.system_prompt.strip():
        return character.system_prompt
    return str(settings.AGENT_SYSTEM_PROMPT)


def agent_model(session: Session) -> str:
    """The model the openai backend asks for `session`: its character's, else AGENT_MODEL."""
    character = character_of(session)
    return (character.model if character is not None else "") or str(settings.AGENT_MODEL)


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
