"""A client generated from the schema (openapi-python-client, as docs/api.md says) works against the
server: it creates, lists, filters, pages and transitions sessions and reads messages, and every answer,
errors and `null` included, parses into its generated types.

The client talks HTTP to the Django WSGI application through httpx's WSGITransport (in this process,
so it sees the test's transaction)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from config.wsgi import application
from tests.api.conftest import PASSWORD
from tests.api.test_schema import generate_schema
from tests.in_process import connection_kept_open

pytestmark = pytest.mark.django_db

PACKAGE = "sessions_client"
GENERATOR_CONFIG = f"""\
package_name_override: {PACKAGE}
project_name_override: sessions-client
post_hooks: []
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("generated_client")
    schema = root / "openapi.json"
    schema.write_text(json.dumps(generate_schema()))
    config = root / "config.yaml"
    config.write_text(GENERATOR_CONFIG)
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(schema)]
    command += ["--output-path", str(root / PACKAGE), "--meta", "none", "--config", str(config)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # The generator says "Warning" for every part of the schema it could not turn into code.
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class Generated:
    """`g.api("api_v1_sessions_list")`, `g.model("Session")`: the generated modules by name."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package

    def api(self, operation_id: str) -> Any:
        group = operation_id.split("_", 1)[0]
        return importlib.import_module(f"{PACKAGE}.api.{group}.{operation_id}")

    def model(self, name: str) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.models"), name)

    def client(self, token: str | None = None) -> Any:
        options: dict[str, Any] = {
            "base_url": "http://testserver",
            "httpx_args": {"transport": httpx.WSGITransport(app=application)},
            "raise_on_unexpected_status": True,  # a status the schema does not list raises
        }
        if token is None:
            return self.package.Client(**options)
        return self.package.AuthenticatedClient(token=token, **options)


def _cursor(url: str) -> str:
    return parse_qs(urlparse(url).query)["cursor"][0]


def test_a_generated_client_drives_sessions_end_to_end(generated, staff, bob, settings):
    settings.AGENT_REPLY_TIMEOUT = 0
    g = Generated(generated)
    Session, Error, Message = g.model("Session"), g.model("Error"), g.model("Message")
    with connection_kept_open():
        tokens = g.api("api_v1_auth_token_create").sync(
            client=g.client(), body=g.model("TokenObtainPairRequest")(username="staffer", password=PASSWORD)
        )
        assert isinstance(tokens, g.model("TokenObtainPair"))
        client = g.client(tokens.access)

        # Create: three sessions, two in business "acme"; an external_id named again answers 200.
        create = g.api("api_v1_sessions_create")
        Request = g.model("SessionCreateRequest")
        created = []
        for number, business in enumerate(["acme", "acme", "other"]):
            response = create.sync_detailed(
                client=client,
                body=Request(title=f"Ticket {number}", business_id=business, external_id=f"t-{number}"),
            )
            assert response.status_code == 201 and isinstance(response.parsed, Session)
            created.append(response.parsed)
        again = create.sync_detailed(client=client, body=Request(external_id="t-0"))
        assert again.status_code == 200 and again.parsed.id == created[0].id
        first = created[0]
        assert first.owner == staff.pk and first.contact is not None and first.last_message_at is None

        # List, filter and page: one acme session a page, two pages, newest activity first.
        listing = g.api("api_v1_sessions_list")
        Page = g.model("PaginatedSessionList")
        page = listing.sync(client=client, business_id="acme", page_size=1)
        assert isinstance(page, Page) and len(page.results) == 1 and page.next_
        second = listing.sync(client=client, business_id="acme", page_size=1, cursor=_cursor(page.next_))
        assert isinstance(second, Page) and not second.next_
        assert {page.results[0].id, second.results[0].id} == {created[0].id, created[1].id}
        Status = g.model("ApiV1SessionsListStatusItem")
        active = listing.sync(client=client, status=[Status.ACTIVE], q="Ticket")
        assert isinstance(active, Page) and {s.id for s in active.results} == {s.id for s in created}

        # Transition: close, reopen, and a refused move (closed → completed) answered as the Error type.
        closed = g.api("api_v1_sessions_close_create").sync(
            first.id, client=client, body=g.model("TransitionRequest")(reason="done")
        )
        assert isinstance(closed, Session) and closed.status == g.model("SessionStatusEnum").CLOSED
        refused = g.api("api_v1_sessions_complete_create").sync(first.id, client=client)
        assert isinstance(refused, Error) and refused.error.code == "transition_refused"
        reopened = g.api("api_v1_sessions_reopen_create").sync(first.id, client=client)
        assert isinstance(reopened, Session) and reopened.status == g.model("SessionStatusEnum").ACTIVE
        closed_list = listing.sync(client=client, status=[Status.CLOSED])
        assert isinstance(closed_list, Page) and closed_list.results == []

        # Messages: send two, read them back oldest first, a page at a time.
        send = g.api("api_v1_sessions_messages_create")
        MessageRequest = g.model("MessageCreateRequest")
        for text in ("Hello", "Anyone there?"):
            message = send.sync(first.id, client=client, body=MessageRequest(content=text))
            assert isinstance(message, Message) and message.session == first.id
        read = g.api("api_v1_sessions_messages_list")
        messages = read.sync(first.id, client=client, page_size=1)
        assert isinstance(messages, g.model("PaginatedMessageList")) and messages.next_
        rest = read.sync(first.id, client=client, page_size=1, cursor=_cursor(messages.next_))
        assert [m.content for m in messages.results + rest.results] == ["Hello", "Anyone there?"]
        assert all(m.direction == g.model("DirectionEnum").INBOUND for m in messages.results)

        # Errors and null parse too: an unknown session, and a user without an active session.
        missing = g.api("api_v1_sessions_retrieve").sync(
            "0" * 8 + "-0000-0000-0000-" + "0" * 12, client=client
        )
        assert isinstance(missing, Error) and missing.error.code == "not_found"
        bob_tokens = g.api("api_v1_auth_token_create").sync(
            client=g.client(), body=g.model("TokenObtainPairRequest")(username="bob", password=PASSWORD)
        )
        nothing = g.api("workspace_api_sessions_active_retrieve").sync_detailed(
            client=g.client(bob_tokens.access)
        )
        assert nothing.status_code == 200 and nothing.parsed is None and nothing.content == b"null"
        mine = g.api("workspace_api_sessions_create").sync(
            client=g.client(bob_tokens.access), body=g.model("CreateUserSessionRequest")(name="Bob's")
        )
        now_active = g.api("workspace_api_sessions_active_retrieve").sync(client=g.client(bob_tokens.access))
        assert isinstance(now_active, g.model("RecoveredSession")) and now_active.id == mine.id
