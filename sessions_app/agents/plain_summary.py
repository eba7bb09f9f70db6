"""A session's title and description from its conversation: deterministic, no model.

The fallback of `sessions_app.agents.summary.summarise`, which asks the agent backend first; call
that one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessions_app.models import Role, Session

TITLE_LENGTH = 60
DESCRIPTION_LENGTH = 200


@dataclass(frozen=True)
class Summary:
    title: str
    description: str


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def person_summary(name: str, company: str, fallback: str) -> Summary:
    """Seed 000's title and description for a session with no messages yet, from who it is with:
    "Chat with Ana (Acme)", "Chat with Ana", "Chat with Acme", else "Chat with <fallback>"."""
    name, company = " ".join(name.split()), " ".join(company.split())
    who = f"{name} ({company})" if name and company else name or company or fallback
    of = f"{name} of {company}" if name and company else name or company or fallback
    return Summary(
        title=clip(f"Chat with {who}", TITLE_LENGTH),
        description=clip(f"A new conversation with {of}; no messages yet.", DESCRIPTION_LENGTH),
    )


def summarize(session: Session, *, fallback_title: str = "", fallback_description: str = "") -> Summary:
    """Title: the first thing the contact said. Description: how many messages, and the latest one."""
    first = (
        session.messages.filter(role=Role.CONTACT).exclude(content="").order_by("created_at", "id").first()
    )
    if first is None:
        return Summary(
            title=clip(fallback_title or session.title or "New conversation", 255),
            description=clip(fallback_description or session.description, 2000),
        )
    last = session.messages.exclude(content="").order_by("-created_at", "-id").first()
    count = session.messages.count()
    latest = clip(last.content, DESCRIPTION_LENGTH) if last else ""
    noun = "message" if count == 1 else "messages"
    return Summary(title=clip(first.content, TITLE_LENGTH), description=f"{count} {noun}. Latest: {latest}")
