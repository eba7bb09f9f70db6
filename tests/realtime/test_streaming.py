"""An `openai` backend's streamed answer reaches the socket piece by piece, then whole; stored once."""

from __future__ import annotations

import pytest

from sessions_app.models import Message, Role
from tests.factories import UserFactory
from tests.http_stub import Reply, running_stub
from tests.realtime.test_socket import Socket, run, token_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "channels_postgres"])

EVENTS = [
    'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
    'data: {"choices":[{"delta":{"content":"Bună "}}]}\n\n',
    'data: {"choices":[{"delta":{"content":"ziua! Cu ce "}}]}\n\n',
    'data: {"choices":[{"delta":{"content":"vă pot ajuta?"}}]}\n\n',
    "data: [DONE]\n\n",
]


@pytest.fixture
def streaming_model(settings):
    for stub in running_stub([Reply(chunks=EVENTS)]):
        settings.AGENT_BACKEND = "openai"
        settings.AGENT_URL = stub.url + "/v1"
        settings.AGENT_API_KEY = "sk-test-not-a-secret"
        settings.AGENT_STREAM = True
        yield stub


def test_a_streamed_answer_arrives_in_chunks_then_whole(streaming_model):
    staff = UserFactory(is_staff=True)

    async def scenario() -> list[list]:
        socket = Socket(token_for(staff), userId="u1")
        assert await socket.connect()
        await socket.reply_to(await socket.push("messages:B1", "phx_join", {}))
        ref = await socket.push("messages:B1", "new_message", {"userId": "u1", "message": "Bună ziua!"})
        assert (await socket.reply_to(ref))["status"] == "ok"
        events = await socket.events(5)  # the user's message, three chunks, the whole answer
        await socket.close()
        return events

    received, *chunks, final = run(scenario())
    assert received[3] == "message_received"
    assert [c[4]["message"] for c in chunks] == ["Bună ", "ziua! Cu ce ", "vă pot ajuta?"]
    assert [c[4]["streaming"] for c in chunks] == [{"isChunk": True, "index": i} for i in range(3)]
    assert {c[4]["responseId"] for c in chunks} == {final[4]["responseId"]}
    assert final[3] == "new_message" and "streaming" not in final[4]
    assert final[4]["message"] == "Bună ziua! Cu ce vă pot ajuta?"
    reply = Message.objects.get(role=Role.AGENT)
    assert reply.content == "Bună ziua! Cu ce vă pot ajuta?"
    assert reply.metadata["streamed"] is True
    assert streaming_model.requests[0].json()["stream"] is True
