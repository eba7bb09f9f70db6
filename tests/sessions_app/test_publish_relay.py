"""Web workers hand their publishes to one relay process through a pipe (sessions_app/publish_relay.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from twilio.request_validator import RequestValidator

from sessions_app import publish_relay
from sessions_app.batched_enqueue import BatchedEnqueue
from sessions_app.publish_relay import RELAY_FD_VARIABLE, Relay, forward, relay_variable
from tests.gunicorn_server import gunicorn
from tests.sessions_app.test_batched_enqueue import Recorder
from tests.twilio_helpers import new_sid, sms_params


class QueueRecorder:
    """Stands in for the relay's own queues: what each add_all brought."""

    def __init__(self) -> None:
        self.added: list[list[Any]] = []

    def add_all(self, items: list[Any]) -> None:
        self.added.append(items)


_fd_numbers = iter(range(400, 1000))


def renumbered(fd: int) -> int:
    """`fd` under a number no earlier test used: a worker reads the variable once per value."""
    new = next(_fd_numbers)
    os.dup2(fd, new)
    os.close(fd)
    return new


@pytest.fixture
def pipe(monkeypatch) -> Iterator[tuple[int, int]]:
    """A relay pipe whose write end this process was given, as a gunicorn worker is."""
    read_fd, write_fd = os.pipe()
    write_fd = renumbered(write_fd)
    os.set_blocking(write_fd, False)
    monkeypatch.setenv(RELAY_FD_VARIABLE, relay_variable(write_fd))
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def relayed(read_fd: int, queue_names: tuple[str, ...] = ("test",)) -> dict[str, QueueRecorder]:
    """What a relay reading `read_fd` would add to its queues, once everything written is read."""
    queues = {name: QueueRecorder() for name in queue_names}
    relay = Relay(read_fd, queues)
    relay._drain()
    return queues


def test_a_worker_s_items_reach_the_relay_s_queue_of_the_same_name_and_not_its_own_thread(pipe):
    read_fd, _ = pipe
    published_here = Recorder()
    queue = BatchedEnqueue("test", published_here, max_batch=10)
    queue.add_all([1, 2, 3])
    queue.add(4)
    assert queue.flush(timeout=5)
    assert published_here.batches == []
    assert relayed(read_fd)["test"].added == [[1, 2, 3], [4]]


def test_broadcast_items_arrive_as_the_layer_publishes_them(pipe):
    read_fd, _ = pipe
    event = {"type": "relay.event", "payload": {"content": "héllo\nthere", "owner": None, "n": 3}}
    assert forward("broadcast", [("ses.abc", event), ("staff.sessions", event)])
    (added,) = relayed(read_fd, ("broadcast",))["broadcast"].added
    assert [(group, message) for group, message in added] == [("ses.abc", event), ("staff.sessions", event)]


def test_without_a_relay_a_queue_publishes_from_its_own_thread(monkeypatch):
    monkeypatch.delenv(RELAY_FD_VARIABLE, raising=False)
    published_here = Recorder()
    queue = BatchedEnqueue("test", published_here, max_batch=10)
    queue.add_all([1, 2])
    assert queue.flush(timeout=5)
    assert published_here.batches == [[1, 2]]


@pytest.mark.parametrize(
    "item",
    [
        pytest.param("x" * publish_relay.LINE_LIMIT, id="longer-than-an-atomic-write"),
        pytest.param(object(), id="not-json"),
    ],
)
def test_an_item_the_pipe_cannot_carry_is_published_by_the_worker(pipe, item):
    read_fd, _ = pipe
    published_here = Recorder()
    queue = BatchedEnqueue("test", published_here, max_batch=10)
    queue.add(item)
    assert queue.flush(timeout=5)
    assert published_here.batches == [[item]]
    assert relayed(read_fd)["test"].added == []


def test_when_the_relay_falls_behind_the_worker_publishes_instead_of_waiting(pipe):
    _, write_fd = pipe
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_fd, b'["filler",[]]\n')  # the relay is not reading: fill the pipe
    published_here = Recorder()
    queue = BatchedEnqueue("test", published_here, max_batch=10)
    started = time.monotonic()
    queue.add(7)
    assert time.monotonic() - started < 1
    assert queue.flush(timeout=5)
    assert published_here.batches == [[7]]


def test_when_the_relay_is_gone_the_worker_says_so_once_and_publishes_everything_itself(pipe, caplog):
    read_fd, _ = pipe
    os.close(read_fd)  # the relay exited: nobody reads the pipe any more
    published_here = Recorder()
    queue = BatchedEnqueue("test", published_here, max_batch=10)
    queue.add(1)
    assert queue.flush(timeout=5)
    queue.add(2)
    assert queue.flush(timeout=5)
    assert [item for batch in published_here.batches for item in batch] == [1, 2]
    assert caplog.text.count("The publish relay is gone") == 1


@pytest.mark.parametrize("which", ["read-end", "regular-file", "another-pipe", "no-inode"])
def test_a_variable_that_does_not_name_the_pipe_s_write_end_is_ignored(monkeypatch, tmp_path, which):
    read_fd, write_fd = (renumbered(fd) for fd in os.pipe())
    other = renumbered(os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT))
    value = {
        "read-end": f"{read_fd}:{os.fstat(read_fd).st_ino}",
        "regular-file": f"{other}:{os.fstat(other).st_ino}",
        "another-pipe": f"{write_fd}:{os.fstat(write_fd).st_ino + 1}",  # the number reused since
        "no-inode": str(write_fd),
    }[which]
    try:
        monkeypatch.setenv(RELAY_FD_VARIABLE, value)
        assert not forward("test", [1])
    finally:
        for fd in (read_fd, write_fd, other):
            os.close(fd)


def test_the_relay_reads_lines_split_across_reads_and_skips_a_line_it_cannot_read(caplog):
    read_fd, write_fd = os.pipe()
    queues = {"test": QueueRecorder()}
    relay = Relay(read_fd, queues)
    try:
        os.write(write_fd, b'["test",[1]]\n["te')
        assert relay._read_available()
        os.write(write_fd, b'st",[2]]\nnot json\n["unknown",[3]]\n["test",[4]]\n')
        assert relay._read_available()
    finally:
        os.close(write_fd)
    assert not relay._read_available()  # end of file once every writer closed the pipe
    os.close(read_fd)
    assert queues["test"].added == [[1], [2], [4]]
    assert caplog.text.count("dropped a line") == 2


def test_the_relay_stops_at_end_of_file_after_taking_in_everything_written():
    read_fd, write_fd = os.pipe()
    queues = {"test": QueueRecorder()}
    for n in range(1000):
        os.write(write_fd, json.dumps(["test", [n]]).encode() + b"\n")
        if n % 100 == 99:
            Relay(read_fd, queues)._read_available()  # keep the pipe from filling up
    os.close(write_fd)
    Relay(read_fd, queues).run()
    os.close(read_fd)
    assert [item for items in queues["test"].added for item in items] == list(range(1000))


# --- under gunicorn, as the README serves the product -------------------------------------------------

needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL")


def _broker_url() -> str:
    # A database of its own on the test Redis, so the queue holds only this test's tasks.
    return settings.REDIS_URL.rsplit("/", 1)[0] + "/14"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _relay_pid(port: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and "sessions_app.publish_relay" in _cmdline(int(entry.name)):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if f"127.0.0.1:{port}" in _cmdline(parent):
                return int(entry.name)
    return None


def _wait_until_reaped(pid: int, timeout: float = 10) -> None:
    """Until `pid` is gone. Not merely a zombie: a killed process's main thread turns zombie while
    its other threads may still hold its files (the pipe's read end) open."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} was not reaped")
        time.sleep(0.05)


def _post_sms(origin: str, from_phone: str) -> None:
    url = f"{origin}/webhooks/twilio/sms/"
    params = sms_params(from_phone, "Hello", MessageSid=new_sid("SM"))
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    response = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)
    assert response.status_code == 200, response.text


def _next_task_origin(broker: redis.Redis, timeout: float = 30) -> int:
    """The pid of the process that published the next reply task (Celery's `origin` header)."""
    popped = broker.brpop(["celery"], timeout=timeout)
    assert popped is not None, "no reply task reached the broker"
    headers = json.loads(popped[1])["headers"]
    assert headers["task"] == "sessions_app.tasks.produce_replies_task"
    return int(headers["origin"].split("@")[0].removeprefix("gen"))


@contextlib.contextmanager
def served_on_a_broker_of_its_own() -> Iterator[tuple[redis.Redis, str, str, int | None]]:
    """gunicorn with two workers publishing to an emptied broker: (broker, origin, port, relay pid).
    The broker keeps what was published after gunicorn stopped, for the test to read."""
    broker = redis.Redis.from_url(_broker_url(), socket_timeout=60)
    broker.flushdb()
    with gunicorn(workers=2, env_overrides={"REDIS_URL": _broker_url()}) as origin:
        port = origin.rsplit(":", 1)[1]
        yield broker, origin, port, _relay_pid(port)


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_under_gunicorn_the_relay_publishes_the_workers_tasks_and_they_take_over_when_it_dies():
    with served_on_a_broker_of_its_own() as (broker, origin, _, relay):
        assert relay is not None, "no publish relay beside the workers"

        _post_sms(origin, "+15557770001")
        assert _next_task_origin(broker) == relay

        os.kill(relay, signal.SIGKILL)
        _wait_until_reaped(relay)  # by the master; lines written before that die with the relay
        _post_sms(origin, "+15557770002")  # the worker finds the pipe broken
        publisher = _next_task_origin(broker)
        assert publisher != relay
        assert "gunicorn" in _cmdline(publisher)


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_stopping_gunicorn_stops_the_relay_after_it_published_what_it_held():
    with served_on_a_broker_of_its_own() as (broker, origin, port, relay):
        assert relay is not None
        for n in range(20):
            _post_sms(origin, f"+1555777{n:04d}")
    assert _relay_pid(port) is None
    assert "publish_relay" not in _cmdline(relay)
    ids = []
    while (popped := broker.rpop("celery")) is not None:
        ids += json.loads(popped)["headers"]["argsrepr"].strip("(),[]").split(", ")
    assert len(ids) == 20
