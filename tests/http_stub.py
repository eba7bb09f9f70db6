"""A local HTTP server a test starts to stand in for a remote API (Twilio, a hosted model).

Each request gets the next scripted response; every request is recorded. Only 127.0.0.1 and the
ports 18310-18369 are used (under xdist, this worker's share of them).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.parallel import worker_ports

PORTS = worker_ports(range(18310, 18370))


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes → as is
    delay: float = 0.0
    content_type: str = "application/json"
    chunks: list[str] | None = None  # sent one by one (server-sent events)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpStub:
    replies: list[Reply] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    default: Reply | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_reply(self) -> Reply:
        if self.replies:
            return self.replies.pop(0)
        assert self.default is not None, "the stub ran out of scripted replies"
        return self.default


def _handler(stub: HttpStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            stub.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            reply = stub.next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            try:
                if reply.chunks is not None:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in reply.chunks:
                        self.wfile.write(chunk.encode())
                        self.wfile.flush()
                    self.close_connection = True
                    return
                payload = reply.body
                data = (
                    payload
                    if isinstance(payload, bytes)
                    else payload.encode()
                    if isinstance(payload, str)
                    else json.dumps(payload).encode()
                )
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    return Handler


def _bind(stub: HttpStub) -> ThreadingHTTPServer:
    for port in PORTS:
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), _handler(stub))
        except OSError:
            continue
        stub.port = port
        return server
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def running_stub(replies: list[Reply] | None = None, default: Reply | None = None) -> Iterator[HttpStub]:
    """Generator for a pytest fixture: yields a started stub and stops it afterwards."""
    stub = HttpStub(replies=list(replies or []), default=default)
    server = _bind(stub)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
