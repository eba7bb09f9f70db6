from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sessions_app.models import Message, Session


@dataclass(frozen=True)
class AgentAnswer:
    text: str
    source: str
    response_id: str
    tools_used: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    streamed: bool = False  # its pieces already went out to sockets as they were generated


class AgentBackend(Protocol):
    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer:
        """The agent's next message, given the session's recent messages, oldest first."""
        ...


@runtime_checkable
class StreamingAgentBackend(Protocol):
    source: str

    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer: ...

    def can_stream(self) -> bool:
        """False when this answer must come whole (e.g. the model may call tools)."""
        ...

    def stream(self, session: Session, history: Sequence[Message]) -> Iterator[str]:
        """The answer's text in pieces, as the backend generates it."""
        ...


class AgentError(Exception):
    """The backend could not produce an answer. `retryable`: trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
