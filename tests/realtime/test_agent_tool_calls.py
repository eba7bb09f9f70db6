"""A frontend agent tool's call reaches the user's socket as `ai_function_call` with `functionData`
`{name, arguments, callId}`, after the reply it belongs to (the model is a local stub)."""

from __future__ import annotations

import pytest

from sessions_app.api.keys import issue_key
from sessions_app.models import AgentTool, ToolRunsOn
from tests.api.test_agent_tools import BOOKING_SCHEMA, text_reply, tool_call_reply
from tests.http_stub import running_stub
from tests.realtime.test_scoped_sockets import mint
from tests.realtime.test_socket import Socket, clean_layer, run

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "channels_postgres"])
__all__ = ["clean_layer"]


@pytest.fixture
def tool_calling_model(settings):
    replies = [
        tool_call_reply("show_booking_form", {"service": "cleaning"}, call_id="call_9"),
        text_reply("Done."),
    ]
    for stub in running_stub(replies):
        settings.AGENT_BACKEND = "openai"
        settings.AGENT_URL = stub.url + "/v1"
        settings.AGENT_API_KEY = "sk-test-not-a-secret"
        settings.AGENT_STREAM = True
        settings.AGENT_TIMEOUT = 2
        yield stub


def test_a_frontend_tool_call_reaches_the_users_socket_as_ai_function_call(tool_calling_model):
    AgentTool.objects.create(
        name="show_booking_form",
        description="Open the form.",
        parameters=BOOKING_SCHEMA,
        runs_on=ToolRunsOn.FRONTEND,
    )
    _, key = issue_key("crm", business_id="B1")
    token = mint(key, businessId="B1", userId="u1").json()["token"]

    async def scenario() -> None:
        socket = Socket(token, businessId="B1", userId="u1")
        assert await socket.connect()
        assert (await socket.reply_to(await socket.push("messages:B1", "phx_join", {})))["status"] == "ok"
        ref = await socket.push("messages:B1", "new_message", {"userId": "u1", "message": "Book me in"})
        assert (await socket.reply_to(ref))["status"] == "ok"
        received, chunk, final, call = await socket.events(4)
        assert received[3] == "message_received"
        assert chunk[4]["streaming"]["isChunk"] and chunk[4]["message"] == "Done."
        assert final[3] == "new_message" and final[4]["metadata"]["toolsUsed"] == ["show_booking_form"]
        assert call[3] == "ai_function_call"
        assert call[4]["functionData"] == {
            "name": "show_booking_form",
            "arguments": {"service": "cleaning"},
            "callId": "call_9",
        }
        assert call[4]["responseId"] == final[4]["responseId"]
        await socket.close()

    run(scenario())
