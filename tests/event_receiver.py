"""A subscriber's endpoint for the event webhook tests: a real HTTP server on 127.0.0.1 that verifies
each delivery with the public `standardwebhooks` library as it arrives, answers what the test
decides, and can be stopped (connections refused) and started again on the same port."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.http_stub import PORTS


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int
    connection: tuple[str, int]  # the client's address and port: one per TCP connection

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.received: list[Received] = []
        self.arrived: list[str] = []  # webhook ids as requests arrive, before they are answered
        self.answer: Callable[[dict[str, Any]], int] = lambda payload: 200
        self.delay = 0.0
        self.body = b'{"ok": true}'  # what every answer carries
        self.close_connections = False  # answer with `Connection: close`
        self.hang_up_on_second = False  # a connection's second request: read, then close unanswered
        self.tls: ssl.SSLContext | None = None  # set before start(): an https endpoint
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        handler = _handler(self)
        # Started again: the same port, retried a little while the old server's sockets close.
        ports = [self.port] * 40 if self.port else list(PORTS)
        for attempt, port in enumerate(ports):
            if attempt and self.port:
                threading.Event().wait(0.05)
            try:
                ThreadingHTTPServer.allow_reuse_address = True
                server = ThreadingHTTPServer(("127.0.0.1", port), handler)
            except OSError:
                continue
            server.daemon_threads = True
            if self.tls is not None:
                server.socket = self.tls.wrap_socket(server.socket, server_side=True)
            self.port = port
            self.server = server
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            return
        raise RuntimeError("no free port")

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def delivered(self) -> list[Received]:
        """The deliveries answered with a 2xx, in arrival order."""
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        requests_here = 0

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            self.requests_here += 1
            if receiver.hang_up_on_second and self.requests_here == 2:
                receiver.arrived.append(headers.get("webhook-id", ""))
                self.close_connection = True  # as a server whose keep-alive ran out just then
                return
            verified = receiver.verify(body, headers)
            receiver.arrived.append(headers.get("webhook-id", ""))
            if receiver.delay:
                threading.Event().wait(receiver.delay)
            status = receiver.answer(json.loads(body))
            with receiver.lock:
                receiver.received.append(Received(headers, body, verified, status, self.client_address))
            answer = receiver.body
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                if receiver.close_connections:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
