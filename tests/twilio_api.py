"""A stateful local stand-in for Twilio's Messages API (create and list), for tests across processes.

`POST …/Messages.json` stores the message and answers 201 with a fresh SID (after `delay` seconds,
so a worker can be killed while its request is in flight: the message is stored when the request
arrives, as Twilio has it once it has read the request); `GET …/Messages.json?To=&From=` lists the
stored ones, newest first, in Twilio's page format. Processes reach it through TWILIO_API_BASE_URL.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers import free_port

ACCOUNT = "AC00000000000000000000000000000000"


@dataclass
class TwilioMessages:
    delay: float = 0.0
    created: list[dict[str, Any]] = field(default_factory=list)
    lists: int = 0
    in_flight: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create(self, form: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            # Random, like Twilio's: counters would collide with the inbound SIDs tests make up.
            sid = f"SM{uuid.uuid4().hex}"
            record = {
                "account_sid": ACCOUNT,
                "api_version": "2010-04-01",
                "sid": sid,
                "to": form.get("To", ""),
                "from": form.get("From", ""),
                "body": form.get("Body", ""),
                "status": "queued",
                "direction": "outbound-api",
                "date_created": formatdate(usegmt=True).replace("GMT", "+0000"),
                "date_sent": None,
                "date_updated": None,
                "error_code": None,
                "error_message": None,
                "num_segments": "1",
                "num_media": "0",
                "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
            }
            self.created.append(record)
            return record

    def matching(self, to: str, from_: str) -> list[dict[str, Any]]:
        with self.lock:
            self.lists += 1
            return [
                record
                for record in reversed(self.created)
                if (not to or record["to"] == to) and (not from_ or record["from"] == from_)
            ]


def _handler(api: TwilioMessages) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the worker was killed while waiting

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            record = api.create(form)
            with api.lock:
                api.in_flight += 1
            try:
                time.sleep(api.delay)
            finally:
                with api.lock:
                    api.in_flight -= 1
            self._send(201, record)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            records = api.matching(query.get("To", ""), query.get("From", ""))
            size = int(query.get("PageSize", "50"))
            self._send(
                200,
                {
                    "messages": records[:size],
                    "page": 0,
                    "page_size": size,
                    "start": 0,
                    "end": max(len(records[:size]) - 1, 0),
                    "first_page_uri": parts.path,
                    "next_page_uri": None,
                    "previous_page_uri": None,
                    "uri": self.path,
                },
            )

    return Handler


@contextlib.contextmanager
def running_twilio(delay: float = 0.0) -> Iterator[TwilioMessages]:
    api = TwilioMessages(delay=delay)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(api))
    server.daemon_threads = True
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
