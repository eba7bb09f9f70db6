"""The default agent: deterministic, no network.

It answers with the first keyword answer (edited by staff in admin) whose keyword the contact's
last message mentions, or else a short acknowledgement.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from sessions_app.agents.base import AgentAnswer
from sessions_app.models import KeywordAnswer, Message, Role, Session

ACKNOWLEDGEMENT = "Thanks for your message! We have received it and will get back to you shortly."


def matching_answer(text: str) -> KeywordAnswer | None:
    for candidate in KeywordAnswer.objects.filter(is_active=True):
        keyword = candidate.keyword.strip()
        if keyword and re.search(rf"(?<!\w){re.escape(keyword)}(?!\w)", text, re.IGNORECASE):
            return candidate
    return None


class BuiltinAgent:
    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer:
        last = next((m for m in reversed(history) if m.role == Role.CONTACT), None)
        seed = f"{session.pk}:{last.pk if last else 0}".encode()
        response_id = f"resp_{hashlib.sha256(seed).hexdigest()[:16]}"
        match = matching_answer(last.content) if last is not None else None
        if match is not None:
            return AgentAnswer(
                text=match.answer, source="builtin", response_id=response_id, tools_used=["keyword_answers"]
            )
        return AgentAnswer(text=ACKNOWLEDGEMENT, source="builtin", response_id=response_id)
