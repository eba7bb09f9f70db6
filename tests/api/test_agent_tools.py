"""Agent tools (issue 20): staff define tools; the openai backend offers them to the model as function
tools and handles its calls (a frontend call becomes the reply's action and `ai_function_call`, a
backend call runs here and its result goes back); the builtin backend ignores them. The model is a
local OpenAI-compatible stub that answers with a tool call, then with text."""

from __future__ import annotations

import json
from typing import Any

import pytest
import time_machine

from sessions_app.admin import AgentToolForm
from sessions_app.models import AgentTool, Message, Role, ToolRunsOn
from tests.api.test_seed001_agent_api import first_message
from tests.http_stub import Reply

BOOKING_SCHEMA = {
    "type": "object",
    "properties": {"service": {"type": "string"}, "date": {"type": "string"}},
    "required": ["service"],
}


def tool_call_reply(name: str, arguments: Any, call_id: str = "call_1") -> Reply:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}],
    }
    return Reply(
        body={
            "id": "chatcmpl-1",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        }
    )


def text_reply(text: str) -> Reply:
    message = {"role": "assistant", "content": text}
    return Reply(
        body={"id": "chatcmpl-2", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    )


@pytest.fixture
def openai_agent(openai_agent, settings):
    settings.AGENT_STREAM = True  # with tools defined the answer comes whole all the same
    return openai_agent


@pytest.fixture
def booking_tool(db) -> AgentTool:
    return AgentTool.objects.create(
        name="show_booking_form",
        description="Open the booking form on the user's page.",
        parameters=BOOKING_SCHEMA,
        runs_on=ToolRunsOn.FRONTEND,
    )


@pytest.mark.django_db(transaction=True)
def test_a_frontend_tool_call_becomes_the_replys_action_and_is_recorded(
    api, service_key, openai_agent, booking_tool
):
    AgentTool.objects.create(name="retired", description="Off.", is_active=False)
    openai_agent.replies = [
        tool_call_reply("show_booking_form", {"service": "cleaning"}),
        text_reply("I opened the booking form for you."),
    ]
    response = first_message(api, service_key, text="I'd like a cleaning")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["message"] == "I opened the booking form for you."
    action = {
        "type": "function_call",
        "name": "show_booking_form",
        "arguments": {"service": "cleaning"},
        "callId": "call_1",
    }
    assert data["actions"] == [action]

    first, second = (r.json() for r in openai_agent.requests)
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "show_booking_form",
                "description": "Open the booking form on the user's page.",
                "parameters": BOOKING_SCHEMA,
            },
        }
    ]
    assert first["stream"] is False
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == "call_1"
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_1"
    assert "sent to the user's page" in tool["content"]

    reply = Message.objects.get(role=Role.AGENT)
    assert reply.metadata["toolsUsed"] == ["show_booking_form"]
    listed = api.get(f"/agent/api/sessions/{data['sessionId']}/messages", auth=service_key).json()
    assert listed[-1]["metadata"]["toolsUsed"] == ["show_booking_form"]


@pytest.mark.django_db(transaction=True)
def test_a_backend_tool_runs_here_and_its_result_goes_back_to_the_model(api, service_key, openai_agent):
    AgentTool.objects.create(name="current_time", description="The time now.", runs_on=ToolRunsOn.BACKEND)
    openai_agent.replies = [tool_call_reply("current_time", {}), text_reply("It is ten o'clock.")]
    with time_machine.travel("2025-10-12 10:00:00+00:00", tick=False):
        data = first_message(api, service_key, text="What time is it?").json()
    assert data["message"] == "It is ten o'clock." and data["actions"] == []
    tool = openai_agent.requests[1].json()["messages"][-1]
    assert json.loads(tool["content"]) == {"now": "2025-10-12T10:00:00+00:00"}
    assert Message.objects.get(role=Role.AGENT).metadata["toolsUsed"] == ["current_time"]


@pytest.mark.django_db(transaction=True)
def test_arguments_that_break_the_schema_are_reported_to_the_model_not_sent_to_the_page(
    api, service_key, openai_agent, booking_tool
):
    openai_agent.replies = [
        tool_call_reply("show_booking_form", {"date": "tomorrow"}),
        tool_call_reply("no_such_tool", "{}", call_id="call_2"),
        text_reply("Which service would you like?"),
    ]
    data = first_message(api, service_key).json()
    assert data["message"] == "Which service would you like?" and data["actions"] == []
    requests = [r.json() for r in openai_agent.requests]
    assert "'service' is a required property" in requests[1]["messages"][-1]["content"]
    assert "no tool named 'no_such_tool'" in requests[2]["messages"][-1]["content"]


@pytest.mark.django_db(transaction=True)
def test_a_model_that_never_stops_calling_tools_fails_the_reply(api, service_key, openai_agent, booking_tool):
    openai_agent.default = tool_call_reply("show_booking_form", {"service": "x"})
    response = first_message(api, service_key)
    assert response.status_code in (200, 202)
    assert not Message.objects.filter(role=Role.AGENT).exists()
    inbound = Message.objects.get(role=Role.CONTACT)
    assert inbound.reply_state == "failed" and "still called tools" in inbound.reply_error


@pytest.mark.django_db(transaction=True)
def test_the_builtin_backend_ignores_tools(api, service_key, settings, booking_tool):
    settings.AGENT_BACKEND = "builtin"
    data = first_message(api, service_key).json()
    assert data["actions"] == []
    assert Message.objects.get(role=Role.AGENT).metadata["toolsUsed"] == []


@pytest.mark.django_db
def test_staff_define_tools_with_a_valid_object_schema_and_backend_tools_name_a_handler():
    def form(**data: Any) -> AgentToolForm:
        fields = {
            "name": "t",
            "description": "d",
            "parameters": "{}",
            "runs_on": "frontend",
            "is_active": True,
        }
        return AgentToolForm(data={**fields, **data})

    good = form(name="show_slots", parameters=json.dumps({"type": "object", "properties": {}}))
    assert good.is_valid(), good.errors
    assert "parameters" in form(parameters=json.dumps({"type": "string"})).errors
    assert "parameters" in form(parameters=json.dumps({"type": "object", "required": "x"})).errors
    assert "name" in form(name="has spaces", parameters=json.dumps({"type": "object"})).errors
    backend = form(name="launch_rockets", runs_on="backend", parameters=json.dumps({"type": "object"}))
    assert "current_time" in str(backend.errors["name"])
