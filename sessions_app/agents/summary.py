"""Titles and descriptions of sessions (the sessions list of seed 000), written from the conversation.

`summarise(session)` asks the configured agent backend when it can summarise (the `openai` backend
does, with one chat completion asking for JSON) and otherwise, or when that fails, falls back to the
deterministic summary of `plain_summary.py`, so a caller always gets an answer and the same
conversation always gets the same fallback. A session with no messages yet has nothing to summarise:
it gets the fallback (the client's own title and description) without asking the backend.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sessions_app.agents import AgentError, get_backend
from sessions_app.agents.openai import OpenAIAgent, chat_messages
from sessions_app.agents.plain_summary import DESCRIPTION_LENGTH, TITLE_LENGTH, clip, summarize
from sessions_app.models import Session

log = logging.getLogger(__name__)

HISTORY_LENGTH = 30
PROMPT = (
    "Summarise this conversation for a support inbox. Answer with JSON only: "
    '{"title": "<at most 8 words>", "description": "<one or two sentences>"}.'
)


@dataclass(frozen=True)
class Summary:
    title: str
    description: str
    source: str  # "openai" or "fallback"


def fallback_summary(
    session: Session, *, fallback_title: str = "", fallback_description: str = ""
) -> Summary:
    """The deterministic summary (`sessions_app.agents.plain_summary.summarize`)."""
    summary = summarize(session, fallback_title=fallback_title, fallback_description=fallback_description)
    return Summary(summary.title, summary.description, "fallback")


def summarise(session: Session, *, fallback_title: str = "", fallback_description: str = "") -> Summary:
    """A title and description for `session`; never raises for a backend failure."""
    backend = get_backend()
    if isinstance(backend, OpenAIAgent):
        history = list(reversed(session.messages.order_by("-created_at", "-id")[:HISTORY_LENGTH]))
        if history:
            try:
                text, _ = backend.complete(chat_messages(session, history, PROMPT))
                data = json.loads(text.strip().removeprefix("```json").removesuffix("```"))
                title, description = str(data["title"]).strip(), str(data["description"]).strip()
                if title:
                    return Summary(clip(title, TITLE_LENGTH), clip(description, DESCRIPTION_LENGTH), "openai")
            except (AgentError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "Summary of session %s from the agent failed (%s); using the fallback", session.pk, exc
                )
    return fallback_summary(session, fallback_title=fallback_title, fallback_description=fallback_description)
