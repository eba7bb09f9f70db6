"""Seed 001's own ChatManager, with the `phoenix` client package from npm, against a running server."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from rest_framework_simplejwt.tokens import AccessToken

from sessions_app.api.keys import issue_key
from sessions_app.models import AgentTool, Session, ToolRunsOn
from tests.api.test_agent_tools import text_reply, tool_call_reply
from tests.factories import UserFactory
from tests.http_stub import running_stub
from tests.servers import AsgiServer

JS = Path(__file__).parent / "js"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None, reason="node and npm are needed"
    ),
]


@pytest.fixture(scope="module")
def phoenix_package() -> Path:
    if not (JS / "node_modules" / "phoenix").exists():
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return JS


class NodeClient:
    def __init__(self, server: AsgiServer, token: str) -> None:
        env = {
            "PATH": __import__("os").environ["PATH"],
            "BASE_URL": server.url,
            "SOCKET_URL": server.url.replace("http://", "ws://") + "/socket",
            "TOKEN": token,
            "BUSINESS_ID": "B0100001",
            "USER_ID": "user_123",
        }
        self.process = subprocess.Popen(
            ["node", "chat_manager.mjs"],
            cwd=JS,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def expect(self, event: str, timeout: float = 15, **match: Any) -> dict[str, Any]:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {event!r} within {timeout}s; saw {seen}") from None
            seen.append(line)
            if line["event"] == event and all(line.get(k) == v for k, v in match.items()):
                return line

    def close(self) -> None:
        if self.process.poll() is None:
            self.send("quit")
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def agent_display(client: NodeClient) -> dict[str, Any]:
    while True:
        line = client.expect("display")
        if line["message"]["type"] == "agent":
            return line["message"]


def test_the_seed_chat_manager_joins_pushes_streams_and_survives_a_restart(phoenix_package):
    staff = UserFactory(username="chat-staff", is_staff=True)
    token = str(AccessToken.for_user(staff))
    server = AsgiServer().start()
    client = NodeClient(server, token)
    try:
        client.expect("initialized")
        client.expect("joined")
        client.send("send Bună ziua! Vreau să fac o programare.")
        pushed = client.expect("pushed")
        session_id = pushed["response"]["sessionId"]
        chunk = client.expect("chunk")
        answer = agent_display(client)
        assert answer["content"] == chunk["message"]
        assert answer["messageId"] == chunk["responseId"]

        server.stop()
        client.expect("closed")
        server.start()
        client.expect("joined")  # the client reconnected and rejoined on its own
        client.send("send Mâine dimineață, vă rog.")
        again = client.expect("pushed")
        assert again["response"]["sessionId"] == session_id
        agent_display(client)
    finally:
        client.close()
        server.stop()

    session = Session.objects.get(pk=session_id)
    assert session.business_id == "B0100001"
    assert session.message_count == 4
    assert list(session.messages.values_list("role", flat=True)) == ["contact", "agent", "contact", "agent"]


def test_the_seed_chat_manager_on_a_minted_token_gets_its_ai_function_call(phoenix_package):
    """The browser path: the service mints a socket token with its key, the seed's ChatManager
    connects with `params: {token}`, and a frontend tool call reaches its `handleFunctionCall`."""
    AgentTool.objects.create(
        name="show_booking_form",
        description="Open the booking form.",
        parameters={"type": "object", "properties": {"service": {"type": "string"}}},
        runs_on=ToolRunsOn.FRONTEND,
    )
    _, key = issue_key("crm", business_id="B0100001")
    replies = [tool_call_reply("show_booking_form", {"service": "cleaning"}), text_reply("Here is the form.")]
    for model in running_stub(replies):
        server = AsgiServer(
            AGENT_BACKEND="openai", AGENT_URL=model.url + "/v1", AGENT_API_KEY="sk-test-not-a-secret"
        ).start()
        client = None
        try:
            minted = requests.post(
                f"{server.url}/agent/api/socket-token",
                json={"businessId": "B0100001", "userId": "user_123"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert minted.status_code == 200, minted.text
            client = NodeClient(server, minted.json()["token"])
            client.expect("joined")
            client.send("send I'd like a cleaning")
            call = client.expect("function_call")
            assert call["functionData"] == {
                "name": "show_booking_form",
                "arguments": {"service": "cleaning"},
                "callId": "call_1",
            }
        finally:
            if client is not None:
                client.close()
            server.stop()
