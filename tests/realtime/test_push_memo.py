"""A broadcast's frame is encoded once per topic in a socket process (realtime/protocol.py `push`)."""

from __future__ import annotations

import json

from sessions_app.realtime import protocol

PAYLOAD = {"sessionId": "s1", "content": "hello"}


def test_the_sockets_of_one_topic_share_one_encoded_frame() -> None:
    first = protocol.push("k1", "staff:sessions", "message_received", PAYLOAD)
    again = protocol.push("k1", "staff:sessions", "message_received", {"changed": "ignored"})
    assert again is first
    assert json.loads(first) == [None, None, "staff:sessions", "message_received", PAYLOAD]


def test_each_topic_and_each_broadcast_gets_its_own_frame() -> None:
    on_staff = protocol.push("k2", "staff:sessions", "message_received", PAYLOAD)
    on_business = protocol.push("k2", "staff:business:B1", "message_received", PAYLOAD)
    next_one = protocol.push("k3", "staff:sessions", "message_received", {"content": "next"})
    assert json.loads(on_business)[2] == "staff:business:B1" != json.loads(on_staff)[2]
    assert json.loads(next_one)[4] == {"content": "next"}


def test_a_broadcast_without_a_key_is_encoded_each_time() -> None:
    # One an older release published, during a rolling deploy.
    assert json.loads(protocol.push(None, "staff:sessions", "x", PAYLOAD))[4] == PAYLOAD
    assert json.loads(protocol.push(None, "staff:sessions", "x", {"other": 1}))[4] == {"other": 1}


def test_the_memo_stays_bounded() -> None:
    for number in range(protocol.PUSH_MEMO_SIZE * 2):
        protocol.push(f"bound-{number}", "staff:sessions", "x", PAYLOAD)
    assert len(protocol._pushes) <= protocol.PUSH_MEMO_SIZE
