"""Agent tools staff define in admin (`AgentTool`): what the openai backend offers the model, and
what happens to each call the model makes.

- a frontend tool's call becomes an action `{"type": "function_call", "name", "arguments",
  "callId"}` on the reply, which `realtime/publish.py` sends to the session's sockets as
  `ai_function_call`; the model is told it was handed to the user's page;
- a backend tool runs its handler below and the model gets the handler's result;
- every call's tool name is recorded in the reply's `metadata.toolsUsed`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from django.utils import timezone

from sessions_app.models import AgentTool, Session, ToolRunsOn

Handler = Callable[[Session, dict[str, Any]], dict[str, Any]]


def _current_time(session: Session, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"now": timezone.now().isoformat()}


def _session_details(session: Session, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "businessId": session.business_id,
        "locationId": session.location_id,
        "status": session.status,
        "messageCount": session.message_count,
    }


# The server-side functions a backend tool may name (its `name` picks the handler).
BACKEND_HANDLERS: dict[str, Handler] = {
    "current_time": _current_time,
    "session_details": _session_details,
}


def active_tools() -> list[AgentTool]:
    return list(AgentTool.objects.filter(is_active=True).order_by("name"))


def openai_tools(tools: list[AgentTool]) -> list[dict[str, Any]]:
    """The `tools` of a chat-completions request."""
    return [
        {
            "type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
        }
        for tool in tools
    ]


@dataclass(frozen=True)
class ToolOutcome:
    result: dict[str, Any]  # what the model is told (the `tool` message's content)
    action: dict[str, Any] | None = None  # for the front end, on the reply
    used: str = ""  # the tool's name, when the call named a tool we offered


def run_tool_call(
    session: Session, tools: list[AgentTool], name: str, raw_arguments: Any, call_id: str
) -> ToolOutcome:
    """One call the model made; never raises (a bad call is reported back to the model)."""
    tool = next((t for t in tools if t.name == name), None)
    if tool is None:
        return ToolOutcome(result={"error": f"there is no tool named {name!r}"})
    try:
        arguments = json.loads(raw_arguments) if isinstance(raw_arguments, str) else raw_arguments
    except ValueError:
        return ToolOutcome(result={"error": "the arguments are not valid JSON"}, used=tool.name)
    if not isinstance(arguments, dict):
        return ToolOutcome(result={"error": "the arguments must be a JSON object"}, used=tool.name)
    try:
        jsonschema.validate(arguments, tool.parameters)
    except jsonschema.ValidationError as exc:
        return ToolOutcome(result={"error": f"invalid arguments: {exc.message}"}, used=tool.name)
    except jsonschema.SchemaError:
        return ToolOutcome(result={"error": "the tool's schema is invalid"}, used=tool.name)
    if tool.runs_on == ToolRunsOn.FRONTEND:
        action = {"type": "function_call", "name": tool.name, "arguments": arguments, "callId": call_id}
        return ToolOutcome(result={"status": "sent to the user's page"}, action=action, used=tool.name)
    handler = BACKEND_HANDLERS.get(tool.name)
    if handler is None:
        return ToolOutcome(result={"error": f"no server handler for {tool.name!r}"}, used=tool.name)
    return ToolOutcome(result=handler(session, arguments), used=tool.name)
