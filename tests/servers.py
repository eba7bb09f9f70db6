"""Run the real product as a separate server process against the test database."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import connection
from psycopg import sql

from tests.parallel import worker_database, worker_ports

# Everything the embedded default must not inherit from the environment pytest runs in: the suite's
# database and broker, and what tests/settings.py sets for itself (a Twilio account SID would make
# the worker try to send the agent's reply to Twilio; a serve on a fresh machine has none).
NOT_INHERITED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "DJANGO_SETTINGS_MODULE",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "FIELD_ENCRYPTION_KEYS",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "AGENT_BACKEND",
    "SESSION_ABANDON_AFTER",
    "SESSION_REUSE_WINDOW",
)

ROOT = Path(__file__).resolve().parent.parent


# The port range this project's tests may listen on (loopback only): this xdist worker's share of it.
PORTS = worker_ports(range(18100, 18200))


def free_port() -> int:
    # In random order: several test runs on one machine would otherwise all race for the first ports
    # (one's health check could even be answered by another's server).
    for port in random.sample(PORTS, len(PORTS)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1} on 127.0.0.1")


def suite_database_url() -> str:
    """The URL of the database pytest-django created (`test_…`), for a server in another process.

    A host that is a folder is a Unix socket (the embedded PostgreSQL of `run.py test`): percent-encoded
    in the URL's host, as dj-database-url reads it."""
    return _database_url(connection.settings_dict["NAME"])


def _database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    where = quote(host, safe="") if host.startswith("/") else f"{host}:{db.get('PORT') or 5432}"
    return f"postgres://{credentials}{where}/{name}"


@contextlib.contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A new, empty database `name` (with this xdist worker's suffix) on the suite's PostgreSQL server
    (not the test database), for a process that must start from nothing; its URL, and it is dropped
    afterwards."""
    name = worker_database(name)
    db = settings.DATABASES["default"]
    options = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": db.get("PORT") or 5432,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**options) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _database_url(name)
    finally:
        with psycopg.connect(**options) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": suite_database_url(),
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
        }
    )
    env.update(extra)
    return env


class AsgiServer:
    """uvicorn serving config.asgi on a free loopback port; restartable on the same port."""

    def __init__(self, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.env = server_env(**env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> AsgiServer:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            stop_process(self.process, timeout=10)
        self.process = None


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask a server process to stop, and kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
