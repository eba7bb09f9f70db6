"""The default agent: deterministic, no network. A short acknowledgement of the last message."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sessions_app.agents.base import AgentAnswer
from sessions_app.models import Message, Role, Session

ACKNOWLEDGEMENT = "Thanks for your message! We have received it and will get back to you shortly."


class BuiltinAgent:
    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer:
        last = next((m for m in reversed(history) if m.role == Role.CONTACT), None)
        seed = f"{session.pk}:{last.pk if last else 0}".encode()
        return AgentAnswer(
            text=ACKNOWLEDGEMENT,
            source="builtin",
            response_id=f"resp_{hashlib.sha256(seed).hexdigest()[:16]}",
        )
