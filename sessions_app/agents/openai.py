"""An agent behind any OpenAI-compatible chat-completions endpoint (AGENT_URL, AGENT_API_KEY,
AGENT_MODEL, AGENT_TIMEOUT), given the session's recent messages as context.

Staff's active agent tools (`agents/tools.py`) are offered as OpenAI function tools; while the model
answers with tool calls, each is handled and reported back, up to MAX_TOOL_ROUNDS rounds, and its
text answer carries the calls made (`toolsUsed`) and the frontend calls (`actions`).

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
from sessions_app.agents.tools import active_tools, openai_tools, run_tool_call
from sessions_app.models import AgentTool, Message, Role, Session

ROLES = {Role.CONTACT: "user", Role.AGENT: "assistant", Role.STAFF: "assistant", Role.SYSTEM: "system"}
# Worth another try: the server is overloaded, restarting or rate-limiting us.
RETRYABLE_STATUSES = {408, 409, 425, 429}
MAX_TOOL_ROUNDS = 4


def chat_messages(
    session: Session, history: Sequence[Message], system_prompt: str, *, with_context: bool = True
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
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

    def _payload(
        self,
        messages: list[dict[str, Any]],
        *,
        stream: bool,
        model: str = "",
        tools: list[AgentTool] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": model or self.model, "messages": messages, "stream": stream}
        if tools:
            payload["tools"] = openai_tools(tools)
        return payload

    def _post(self, payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """(choices[0].message, response id) of one non-streamed completion."""
        try:
            response = httpx.post(self.url, json=payload, headers=self.headers, timeout=self.timeout)
        except httpx.TimeoutException:
            raise AgentError(f"the agent did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise AgentError(f"could not reach the agent: {type(exc).__name__}") from None
        _check_status(response)
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AgentError("the agent's reply is malformed (no choices[0].message)") from None
        if not isinstance(message, dict):
            raise AgentError("the agent's reply is malformed (choices[0].message is not an object)")
        return message, str(data.get("id") or "")

    def complete(self, messages: list[dict[str, Any]], *, model: str = "") -> tuple[str, str]:
        """(text, response id) of one non-streamed completion, without tools."""
        message, response_id = self._post(self._payload(messages, stream=False, model=model))
        return _text_of(message), response_id

    def can_stream(self) -> bool:
        # Tool calls are handled on whole completions; with tools defined the answer is not streamed.
        return not AgentTool.objects.filter(is_active=True).exists()

    def answer(self, session: Session, history: Sequence[Message]) -> AgentAnswer:
        messages = chat_messages(session, history, system_prompt(session))
        model = agent_model(session)
        tools = active_tools()
        if not tools:
            text, response_id = self.complete(messages, model=model)
            return AgentAnswer(text=text, source="openai", response_id=response_id)
        used: list[str] = []
        actions: list[dict[str, Any]] = []
        for _ in range(MAX_TOOL_ROUNDS):
            message, response_id = self._post(self._payload(messages, stream=False, model=model, tools=tools))
            calls = message.get("tool_calls") or []
            if not calls:
                return AgentAnswer(
                    text=_text_of(message),
                    source="openai",
                    response_id=response_id,
                    tools_used=used,
                    actions=actions,
                )
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                raise AgentError("the agent's reply is malformed (tool_calls is not a list of objects)")
            messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})
            for call in calls:
                function = call.get("function") if isinstance(call.get("function"), dict) else {}
                call_id = str(call.get("id") or "")
                outcome = run_tool_call(
                    session,
                    tools,
                    str(function.get("name") or ""),
                    function.get("arguments") or "{}",
                    call_id,
                )
                if outcome.used:
                    used.append(outcome.used)
                if outcome.action is not None:
                    actions.append(outcome.action)
                messages.append(
                    {"role": "tool", "tool_call_id": call_id, "content": json.dumps(outcome.result)}
                )
        raise AgentError(f"the agent still called tools after {MAX_TOOL_ROUNDS} rounds", retryable=False)

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


def _text_of(message: dict[str, Any]) -> str:
    text = message.get("content")
    if not isinstance(text, str) or not text.strip():
        raise AgentError("the agent's reply is malformed (empty content)")
    return text.strip()


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
