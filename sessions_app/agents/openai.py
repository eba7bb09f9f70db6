"""An agent behind any OpenAI-compatible chat-completions endpoint (AGENT_URL, AGENT_API_KEY,
AGENT_MODEL, AGENT_TIMEOUT), given the session's recent messages as context.

Every failure becomes an `AgentError` whose message says what went wrong (never the key); the
reply task decides about retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from django.conf import settings

from sessions_app.agents.base import AgentAnswer, AgentError
from sessions_app.agents.context import agent_model, context_message, system_prompt
from sessions_app.models import Message, Role, Session

ROLES = {Role.CONTACT: "user", Role.AGENT: "assistant", Role.STAFF: "assistant", Role.SYSTEM: "system"}
# Worth another try: the server is overloaded, restarting or rate-limiting us.
RETRYABLE_STATUSES = {408, 409, 425, 429}


def chat_messages(
    session: Session, history: Sequence[Message], system_prompt: str, *, with_context: bool = True
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}]
    if with_context and (context := context_message(session)):
        messages.append({"role": "system", "content": context})
    messages += [
        {"role": ROLES.get(Role(m.role), "user"), "content": m.content} for m in history if m.content
    ]
    return messages


class OpenAIAgent:
    source = "openai"

    def __init__(self) -> None:
        self.url = settings.AGENT_URL.rstrip("/") + "/chat/completions"
        self.model = settings.AGENT_MODEL
        self.timeout = float(settings.AGENT_TIMEOUT)
        self.headers = {"Content-Type": "application/json"}
        if settings.AGENT_API_KEY:
            self.headers["Authorization"] = f"Bearer {settings.AGENT_API_KEY}"

    def _payload(self, messages: list[dict[str, str]], *, stream: bool, model: str = "") -> dict[str, Any]:
        return {"model": model or self.model, "messages": messages, "stream": stream}

    def complete(self, messages: list[dict[str, str]], *, model: str = "") -> tuple[str, str]:
        """(text, response id) of one non-streamed completion."""
        try:
            response = httpx.post(
                self.url,
                json=self._payload(messages, stream=False, model=model),
                headers=self.headers,
                timeout=self.timeout,
            )
        except httpx.TimeoutException:
            raise AgentError(f"the agent did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise AgentError(f"could not reach the agent: {type(exc).__name__}") from None
        _check_status(response)
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AgentError("the agent's reply is malformed (no choices[0].message.content)") from None
        if not isinstance(text, str) or not text.strip():
            raise AgentError("the agent's reply is malformed (empty content)")
        return text.strip(), str(data.get("id") or "")

    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer:
        text, response_id = self.complete(
            chat_messages(session, history, system_prompt(session)), model=agent_model(session)
        )
        return AgentAnswer(text=text, source="openai", response_id=response_id)

    def stream(self, session: Session, history: Sequence[Message]) -> Iterator[str]:
        """The answer as it is generated, chunk by chunk (server-sent events, `stream: true`)."""
        messages = chat_messages(session, history, system_prompt(session))
        try:
            with httpx.stream(
                "POST",
                self.url,
                json=self._payload(messages, stream=True, model=agent_model(session)),
                headers=self.headers,
                timeout=self.timeout,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                _check_status(response)
                yield from _sse_chunks(response.iter_lines())
        except httpx.TimeoutException:
            raise AgentError(f"the agent stopped answering for {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise AgentError(f"could not reach the agent: {type(exc).__name__}") from None


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    raise AgentError(f"the agent answered HTTP {status}", retryable=retryable)


def _sse_chunks(lines: Iterator[str]) -> Iterator[str]:
    produced = False
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            break
        try:
            delta = json.loads(data)["choices"][0].get("delta", {}).get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise AgentError("the agent's stream is malformed") from None
        if delta:
            produced = True
            yield delta
    if not produced:
        raise AgentError("the agent's stream ended without any content")
