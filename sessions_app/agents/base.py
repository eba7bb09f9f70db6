from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sessions_app.models import Message, Session


@dataclass(frozen=True)
class AgentAnswer:
    text: str
    source: str
    response_id: str
    tools_used: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


class AgentBackend(Protocol):
    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer:
        """The agent's next message, given the session's recent messages, oldest first."""
        ...


class AgentError(Exception):
    """The backend could not produce an answer. `retryable`: trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
