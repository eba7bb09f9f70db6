"""Publishing runs on the calling thread (realtime/publish.py): a layer server that does not answer
holds the caller up for PUBLISH_TIMEOUT at most, and the change stays stored."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from channels.layers import channel_layers

from sessions_app.models import Session
from sessions_app.realtime import publish
from sessions_app.realtime.groups import STAFF_GROUP, business_group, session_group
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A loopback port that accepts connections and never answers, as a hung Redis would."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_a_layer_that_does_not_answer_holds_the_publisher_for_the_timeout_at_most(
    settings, silent_redis, caplog
):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [silent_redis]},
        }
    }
    channel_layers.backends.clear()
    session = SessionFactory()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="sessions_app.realtime.publish"):
            publish.publish(session, "session_updated", {"sessionId": str(session.pk)})
        waited = time.monotonic() - started
    finally:
        channel_layers.backends.clear()
    assert publish.PUBLISH_TIMEOUT <= waited < publish.PUBLISH_TIMEOUT + 2
    assert "Could not broadcast session_updated" in caplog.text


def test_a_session_opened_by_the_change_is_not_broadcast_on_its_own_topic() -> None:
    session = Session(id=uuid.uuid4(), business_id="B1")
    assert publish._groups(session) == [session_group(session.pk), STAFF_GROUP, business_group("B1")]
    assert publish._groups(session, opened=True) == [STAFF_GROUP, business_group("B1")]
