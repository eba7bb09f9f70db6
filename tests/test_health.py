"""`/healthz` (the process is up) and `/readyz` (the database and the broker answer within 1 s).

The failing cases run a real server process (tests/servers.py) whose database or broker is a
socket on loopback that either refuses connections or accepts them and never answers: the
dependency that is down, and the one that hangs, which only a deadline catches.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from django.test import Client

from tests.servers import AsgiServer, free_port


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen(64)
        yield listener.getsockname()[1]


def closed_port() -> int:
    return free_port()  # nothing listens there: connections are refused at once


@contextlib.contextmanager
def server(**env: str) -> Iterator[AsgiServer]:
    started = AsgiServer(**env).start(timeout=60)
    try:
        yield started
    finally:
        started.stop()


def timed_readyz(url: str) -> tuple[requests.Response, float]:
    began = time.monotonic()
    response = requests.get(f"{url}/readyz", timeout=10)
    return response, time.monotonic() - began


def test_healthz_answers_without_authentication_or_database():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


@pytest.mark.django_db(transaction=True)
def test_readyz_answers_200_when_the_database_and_the_broker_answer():
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db(transaction=True)
def test_probes_are_not_redirected_to_https_while_other_pages_are(settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    redirected = client.get("/sessions/")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_hung_database_within_a_second_and_a_refused_broker():
    with silent_listener() as hung_port:
        hung_database = f"postgres://postgres@127.0.0.1:{hung_port}/nothing"
        dead_broker = f"redis://127.0.0.1:{closed_port()}/5"
        with server(DATABASE_URL=hung_database, CELERY_BROKER_URL=dead_broker) as web:
            assert requests.get(f"{web.url}/healthz", timeout=5).status_code == 200
            response, elapsed = timed_readyz(web.url)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready: database, broker"
    assert body["checks"]["database"] == "no answer within 1 s"
    assert body["checks"]["broker"] != "ok"
    # One deadline for both checks, plus a request's overhead; not the TCP timeout.
    assert elapsed < 2.5, f"/readyz took {elapsed:.2f} s"


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_hung_broker_and_not_the_database():
    with silent_listener() as hung_port, server(CELERY_BROKER_URL=f"redis://127.0.0.1:{hung_port}/5") as web:
        response, elapsed = timed_readyz(web.url)
        # A second probe while the first one's check still hangs in its thread.
        again, _ = timed_readyz(web.url)
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready: broker",
        "checks": {"database": "ok", "broker": "no answer within 1 s"},
    }
    assert again.status_code == 503
    assert elapsed < 2.5, f"/readyz took {elapsed:.2f} s"
