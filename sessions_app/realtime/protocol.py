"""Phoenix channel protocol, V2 JSON serializer: every frame is `[join_ref, ref, topic, event, payload]`.

Only what a server needs: decode a client frame (or say why it is not one), encode replies and pushes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

PHX_JOIN = "phx_join"
PHX_LEAVE = "phx_leave"
PHX_REPLY = "phx_reply"
PHX_ERROR = "phx_error"
PHX_CLOSE = "phx_close"
HEARTBEAT = "heartbeat"
PHOENIX_TOPIC = "phoenix"
MAX_FRAME_BYTES = 64 * 1024


class BadFrame(ValueError):
    pass


@dataclass(frozen=True)
class Frame:
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: dict[str, Any]


def _ref(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadFrame(f"{name} must be a string or null")


def decode(text: str) -> Frame:
    if len(text.encode()) > MAX_FRAME_BYTES:
        raise BadFrame(f"frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFrame(f"not JSON: {exc.msg}") from None
    if not isinstance(data, list) or len(data) != 5:
        raise BadFrame("a frame is a JSON array [join_ref, ref, topic, event, payload]")
    join_ref, ref, topic, event, payload = data
    if not isinstance(topic, str) or not topic:
        raise BadFrame("topic must be a non-empty string")
    if not isinstance(event, str) or not event:
        raise BadFrame("event must be a non-empty string")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise BadFrame("payload must be a JSON object")
    return Frame(_ref(join_ref, "join_ref"), _ref(ref, "ref"), topic, event, payload)


def salvage_refs(text: str) -> tuple[str | None, str | None, str]:
    """Best-effort refs and topic of a frame we could not decode, so the error reply reaches its push."""
    try:
        data = json.loads(text)
        if isinstance(data, list) and len(data) >= 3:
            join_ref = data[0] if isinstance(data[0], str | None) else None
            ref = data[1] if isinstance(data[1], str | None) else None
            topic = data[2] if isinstance(data[2], str) else PHOENIX_TOPIC
            return join_ref, ref, topic
    except (json.JSONDecodeError, TypeError):
        pass
    return None, None, PHOENIX_TOPIC


def encode(join_ref: str | None, ref: str | None, topic: str, event: str, payload: dict[str, Any]) -> str:
    return json.dumps([join_ref, ref, topic, event, payload], separators=(",", ":"), default=str)


# Pushes encoded lately in this process, by (broadcast key, topic): a broadcast reaches every socket
# of a topic in a process, and each would otherwise encode the same frame (8 % of a socket process's
# CPU per event under fan-out, docs/realtime.md). Sockets run on one event loop: no lock.
_pushes: OrderedDict[tuple[str, str], str] = OrderedDict()
PUSH_MEMO_SIZE = 512


def push(key: str | None, topic: str, event: str, payload: dict[str, Any]) -> str:
    """The frame pushing broadcast `key` (`event`, `payload`) on `topic`, encoded once per process
    (each time for a broadcast with no key: one an older release published)."""
    if key is None:
        return encode(None, None, topic, event, payload)
    frame = _pushes.get((key, topic))
    if frame is None:
        frame = _pushes[(key, topic)] = encode(None, None, topic, event, payload)
        if len(_pushes) > PUSH_MEMO_SIZE:
            _pushes.popitem(last=False)
    return frame


def reply(join_ref: str | None, ref: str | None, topic: str, status: str, response: dict[str, Any]) -> str:
    return encode(join_ref, ref, topic, PHX_REPLY, {"status": status, "response": response})
