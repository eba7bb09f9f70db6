"""The deliveries' HTTP client: POSTs over kept-alive HTTP/1.1 connections, each new one vetted.

The standard library's `http.client` with a small pool around it: a process keeps up to
`MAX_IDLE_PER_ORIGIN` idle connections per endpoint origin (scheme, host, port) for `KEEPALIVE`
seconds, and a connection goes back to the pool only when its answer was read to the end and the
server did not ask to close it. Every new connection is made by `addresses.vetted_socket` (the SSRF
rule at delivery: resolve, vet every address, connect to a vetted one; TLS checks the certificate
against the URL's host name). A reused connection that the server closed meanwhile (it answers
nothing, or the write fails) is replaced by a new one once, before anything was received.

Why not httpcore (the client before, which httpx wraps): its pure-Python h11 state machine, pool and
trace hooks cost 0.23 ms of CPU per POST against 0.09 ms here, a quarter of the worker's CPU per
delivery (`bench/event_webhooks.py --backlog 2000 --inline`, docs/event-webhooks.md, "Speed").
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from sessions_app.events.addresses import UnsafeAddress, vetted_socket

KEEPALIVE = 30.0  # seconds an idle connection is kept
MAX_IDLE_PER_ORIGIN = 8


class RequestFailed(Exception):
    """No answer: `kind` says where it failed (ConnectError, WriteError, ReadError,
    RemoteProtocolError, Timeout); the message, what happened."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Answer:
    status: int
    body: bytes  # at most the `read_limit` asked for


class _Plain(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = vetted_socket(self.host, self.port, self.timeout)


class _Tls(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, timeout: float, tls: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=tls)
        self.tls = tls

    def connect(self) -> None:
        self.sock = self.tls.wrap_socket(
            vetted_socket(self.host, self.port, self.timeout), server_hostname=self.host
        )


Origin = tuple[str, str, int]


class Pool:
    """Kept-alive connections per origin, shared by a process's threads (each connection is used by
    one request at a time)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.lock = threading.Lock()
        self.idle: dict[Origin, list[tuple[http.client.HTTPConnection, float]]] = {}
        self.tls: ssl.SSLContext | None = None

    def post(self, url: str, headers: Mapping[str, str], body: bytes, read_limit: int) -> Answer:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RequestFailed("UnsupportedProtocol", f"not an http(s) URL: {url[:100]}")
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection, reused = self._take(origin)
        try:
            answer, keep = self._exchange(connection, reused, target, headers, body, read_limit)
        except RequestFailed as failed:
            connection.close()
            if not (reused and failed.kind == "Stale"):
                raise
            connection, reused = self._new(origin), False  # the server closed it while it was idle
            try:
                answer, keep = self._exchange(connection, False, target, headers, body, read_limit)
            except RequestFailed:
                connection.close()
                raise
        if keep:
            self._give_back(origin, connection)
        else:
            connection.close()
        return answer

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        reused: bool,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        read_limit: int,
    ) -> tuple[Answer, bool]:
        """One request and its answer; whether the connection can carry another."""
        if connection.sock is None:
            try:
                connection.connect()
            except UnsafeAddress as exc:
                raise RequestFailed("ConnectError", f"refused: {exc}") from None
            except TimeoutError:
                raise RequestFailed("Timeout", "connect") from None
            except OSError as exc:
                raise RequestFailed("ConnectError", str(exc) or type(exc).__name__) from None
        try:
            connection.request("POST", target, body=body, headers=dict(headers))
        except TimeoutError:
            raise RequestFailed("Timeout", "write") from None
        except OSError as exc:
            raise RequestFailed("Stale" if reused else "WriteError", str(exc) or type(exc).__name__) from None
        try:
            response = connection.getresponse()
        except http.client.RemoteDisconnected as exc:  # closed without a byte of answer
            raise RequestFailed("Stale" if reused else "RemoteProtocolError", str(exc)) from None
        except TimeoutError:
            raise RequestFailed("Timeout", "read") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RequestFailed("ReadError", f"{type(exc).__name__}: {exc}") from None
        try:
            data = response.read(read_limit)
        except TimeoutError:
            raise RequestFailed("Timeout", "read") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RequestFailed("ReadError", f"{type(exc).__name__}: {exc}") from None
        # Reusable only when the answer was read to its end and the server keeps the connection.
        return Answer(response.status, data), response.isclosed() and not response.will_close

    def _take(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self.lock:
            idle = self.idle.get(origin, [])
            while idle:
                connection, since = idle.pop()
                if now - since < KEEPALIVE and connection.sock is not None and _quiet(connection.sock):
                    return connection, True
                connection.close()  # expired, or the server closed it (readable: EOF)
        return self._new(origin), False

    def _new(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "https":
            with self.lock:
                if self.tls is None:
                    self.tls = ssl.create_default_context()
            return _Tls(host, port, self.timeout, self.tls)
        return _Plain(host, port, timeout=self.timeout)

    def _give_back(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            idle = self.idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append((connection, time.monotonic()))
                return
        connection.close()

    def close(self) -> None:
        with self.lock:
            for idle in self.idle.values():
                for connection, _ in idle:
                    connection.close()
            self.idle.clear()


def _quiet(sock: socket.socket) -> bool:
    """An idle kept-alive connection has nothing to read; readable means the server closed it."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


_pool_lock = threading.Lock()
_pool: tuple[int, Pool] | None = None


def pool(timeout: float) -> Pool:
    """This process's pool (a forked process makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), Pool(timeout))
        return _pool[1]


def close_pool() -> None:
    """Drop every kept-alive connection (tests that change the address rule; shutdown)."""
    global _pool
    with _pool_lock:
        if _pool is not None and _pool[0] == os.getpid():
            _pool[1].close()
        _pool = None
