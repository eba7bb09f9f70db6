"""A worker killed with -9 in the middle of a burst loses no reply and sends nothing twice.

Real processes on a real Redis: a beat (the recovery task every second), a prefork worker that is
killed (its whole process group, with SIGKILL) while it is waiting for Twilio's answer to a send,
and a second worker started afterwards. The agent (an OpenAI-compatible stand-in) and Twilio's
Messages API (tests/twilio_api.py, which stores a message as soon as the request arrives) are local
HTTP servers that take a moment to answer, so the kill finds replies and sends in flight.

Every inbound message must be answered exactly once and every reply handed to Twilio exactly once,
within the lease (5 s here) plus the recovery interval (1 s) of the second worker's start, give or
take the processes' start-up. What makes it so (docs/scaling.md, "Workers killed mid-task"): the
database's claims with a lease, the recovery task, and for a send whose outcome the kill made
unknown, asking Twilio before sending again (`outbound.reconcile_lost_deliveries`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.models import Q

from config.celery_app import app as celery_app
from sessions_app.models import Message, ReplyState, Role
from tests.http_stub import HttpStub, Reply, running_stub
from tests.sessions_app.test_worker import ROOT, process_env, publishing_to_the_broker  # noqa: F401
from tests.twilio_api import ACCOUNT, TwilioMessages, running_twilio
from tests.twilio_helpers import send_sms

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL to run"),
    # Whole fleets of processes: never at the same time as another such test (run.py's PARALLEL).
    pytest.mark.xdist_group("fleets"),
]

BURST = 40
LEASE = 5
ANSWER = {"id": "chatcmpl-burst", "choices": [{"message": {"content": "Thanks, we are on it."}}]}


@pytest.fixture
def slow_agent() -> Iterator[HttpStub]:
    yield from running_stub(default=Reply(body=ANSWER, delay=0.3))


@pytest.fixture
def slow_twilio() -> Iterator[TwilioMessages]:
    with running_twilio(delay=0.5) as api:
        yield api


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # A process group of its own, so a kill takes the worker's pool processes with it.
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def kill_group(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "config", *args, "--loglevel", "INFO"]


WORKER = ("worker", "--concurrency", "3", "--without-gossip", "--without-mingle")


def wait_until(condition, timeout: float, what: str, logs: list[Path]) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if condition():
            return time.monotonic() - began
        time.sleep(0.05)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}" for log in logs)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


def everything_answered_and_sent(twilio: TwilioMessages) -> bool:
    replies = Message.objects.filter(role=Role.AGENT)
    return (
        not Message.objects.filter(role=Role.CONTACT).exclude(reply_state=ReplyState.DONE).exists()
        and replies.count() >= BURST
        # Sent: Twilio's id stored on it (an unsent reply's is NULL).
        and not replies.filter(Q(external_id=None) | Q(external_id="")).exists()
        and len(twilio.created) >= BURST
    )


@pytest.mark.usefixtures("publishing_to_the_broker")
def test_a_worker_killed_mid_burst_loses_no_reply_and_sends_none_twice(
    client,
    tmp_path,
    slow_agent,
    slow_twilio,
):
    celery_app.control.purge()
    env = process_env(tmp_path, os.environ["REDIS_URL"])
    env.update(
        AGENT_BACKEND="openai",
        AGENT_URL=slow_agent.url + "/v1",
        AGENT_API_KEY="sk-test-not-a-secret",
        AGENT_MODEL="test-model",
        AGENT_STREAM="false",
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_API_BASE_URL=slow_twilio.url,
        TASK_LEASE=str(LEASE),
        TASK_RECOVERY_INTERVAL="1",
        TASK_RECOVERY_GRACE="1",
        TASK_RETRY_BACKOFF="0",
        TASK_RETRY_BACKOFF_MAX="1",
        SESSION_SWEEP_INTERVAL="3600",
        BEAT_KEY_PREFIX=f"test-killed-{uuid.uuid4().hex[:8]}:",
    )
    logs = [tmp_path / name for name in ("beat.log", "worker-1.log", "worker-2.log")]
    beat = start(celery("beat"), env, logs[0])
    first = start(celery(*WORKER), env, logs[1])
    second = None
    try:
        # Two waves, so that replies of the second are being produced while sends of the first
        # are in flight.
        for n in range(BURST // 2):
            assert send_sms(client, f"+1555100{n:04d}", f"Hello {n}").status_code == 200
        wait_until(lambda: len(slow_twilio.created) >= 2, 90, "the first sends", logs)
        for n in range(BURST // 2, BURST):
            assert send_sms(client, f"+1555100{n:04d}", f"Hello {n}").status_code == 200

        def replying() -> bool:
            return Message.objects.filter(reply_state=ReplyState.CLAIMED).exists()

        # Kill while a send is in flight (Twilio has the message, the worker has not recorded it)
        # and, if it comes to that within 20 s, a reply is being produced too.
        try:
            wait_until(lambda: slow_twilio.in_flight >= 1 and replying(), 20, "a send and a reply", [])
        except pytest.fail.Exception:
            wait_until(lambda: slow_twilio.in_flight >= 1, 30, "a send in flight", logs)
        kill_group(first)
        answered_at_kill = Message.objects.filter(role=Role.AGENT).count()
        claimed_at_kill = Message.objects.filter(reply_state=ReplyState.CLAIMED).count()
        sent_at_kill = len(slow_twilio.created)
        assert sent_at_kill < BURST, "the burst was over before the kill"

        second = start(celery(*WORKER), env, logs[2])
        took = wait_until(
            lambda: everything_answered_and_sent(slow_twilio), 90, "every message answered and sent", logs
        )
        time.sleep(LEASE + 2)  # anything still to come (a duplicate) would come within a lease
        print(
            f"killed with {answered_at_kill}/{BURST} answered ({claimed_at_kill} being answered) "
            f"and {sent_at_kill} sent; "
            f"the rest done {took:.1f} s after the second worker started"
        )
    finally:
        for process in (first, second, beat):
            if process is not None:
                kill_group(process, signal.SIGTERM)

    inbound = list(Message.objects.filter(role=Role.CONTACT))
    replies = list(Message.objects.filter(role=Role.AGENT).select_related("session__contact"))
    assert len(inbound) == BURST
    assert sorted(reply.in_reply_to_id for reply in replies) == sorted(m.pk for m in inbound)
    assert {m.reply_state for m in inbound} == {ReplyState.DONE}
    # Twilio got one message per contact, and each is the one its reply records.
    sent_to = sorted(record["to"] for record in slow_twilio.created)
    assert sent_to == sorted(reply.session.contact.phone for reply in replies)
    assert {record["sid"] for record in slow_twilio.created} == {reply.external_id for reply in replies}
    # The send the kill interrupted was found at Twilio, not sent again.
    assert slow_twilio.lists >= 1
