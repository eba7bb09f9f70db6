"""A real worker process on a real Redis broker: what CI runs with REDIS_URL set.

The database rows are committed (transaction=True) so the worker and web processes, which connect
to the same test database, see them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from twilio.request_validator import RequestValidator

from config.celery_app import app as celery_app
from sessions_app.models import Message, ReplyState, Role, Session
from sessions_app.tasks import produce_reply_task
from tests.http_stub import HttpStub, Reply, running_stub
from tests.parallel import worker_index
from tests.servers import suite_database_url
from tests.twilio_helpers import new_sid, send_sms, sms_params

ROOT = Path(__file__).resolve().parents[2]
WEB_PORT = 18301 + worker_index()  # one each per xdist worker, outside the ranges free_port() picks from
OWN_REDIS_PORT = 18379 + worker_index()

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL to run"),
]


def database_url() -> str:
    return suite_database_url()


def process_env(tmp_path: Path, broker: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="false",
        SECRET_KEY="test-only-not-a-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        TWILIO_AUTH_TOKEN=settings.TWILIO_AUTH_TOKEN,
        TWILIO_ACCOUNT_SID="",
        DATABASE_URL=database_url(),
        REDIS_URL=broker,
        CELERY_TASK_ALWAYS_EAGER="false",
        DATA_DIR=str(tmp_path / "data"),
        TASK_RECOVERY_INTERVAL="1",
        TASK_RECOVERY_GRACE="1",
    )
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_command(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "solo",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
        *extra,
    ]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tails}")


def run_worker_until_answered(
    inbound: Message, env: dict[str, str], tmp_path: Path, linger: float = 0
) -> None:
    """Run a real worker until `inbound`'s reply is done (failing after 60 s), then `linger` seconds
    more for any work still queued, and stop it."""
    log = tmp_path / "worker.log"
    worker = start(worker_command(), env, log)
    try:
        wait_until(
            lambda: Message.objects.filter(pk=inbound.pk, reply_state=ReplyState.DONE).exists(),
            60,
            "the reply",
            [log],
        )
        time.sleep(linger)
    finally:
        stop(worker)


@pytest.fixture
def publishing_to_the_broker() -> Iterator[None]:
    """This process publishes to the real broker instead of running tasks inline."""
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = True


def test_a_real_worker_answers_once_even_when_the_task_is_delivered_twice(
    client, tmp_path, publishing_to_the_broker
):
    celery_app.control.purge()
    send_sms(client, "+15551112222", "Hello")  # queued on commit to the real broker
    inbound = Message.objects.get(role=Role.CONTACT)
    produce_reply_task.delay(inbound.pk)  # a redelivery of the same work
    # Linger: the second delivery runs too.
    run_worker_until_answered(inbound, process_env(tmp_path, os.environ["REDIS_URL"]), tmp_path, linger=1)
    assert Message.objects.filter(role=Role.AGENT).count() == 1
    assert Session.objects.get().message_count == 2


@pytest.fixture
def model() -> Iterator[HttpStub]:
    """A stand-in for an OpenAI-compatible API, reachable by the worker process over loopback."""
    yield from running_stub()


def test_a_failed_reply_is_retried_by_the_worker_after_its_backoff(
    client, tmp_path, publishing_to_the_broker, model
):
    """The production path of a retry: the worker's task re-queues the reply on the broker with a
    countdown (eager tests run the retry at once, so only a real worker shows the wait)."""
    model.replies = [
        Reply(status=503, body={"error": {"message": "overloaded"}}),
        Reply(body={"id": "chatcmpl-retried", "choices": [{"message": {"content": "Back again."}}]}),
    ]
    celery_app.control.purge()
    send_sms(client, "+15551113333", "Hello")
    inbound = Message.objects.get(role=Role.CONTACT)
    env = process_env(tmp_path, os.environ["REDIS_URL"])
    env.update(
        AGENT_BACKEND="openai",
        AGENT_URL=model.url + "/v1",
        AGENT_API_KEY="sk-test-not-a-secret",
        AGENT_MODEL="test-model",
        AGENT_STREAM="false",
        TASK_RETRY_BACKOFF="2",  # the first retry waits 1-2 s
        TASK_MAX_ATTEMPTS="3",
    )
    run_worker_until_answered(inbound, env, tmp_path)
    first, second = model.requests
    assert second.received_at - first.received_at >= 1.0
    reply = Message.objects.get(role=Role.AGENT)
    assert (reply.content, reply.metadata["responseId"]) == ("Back again.", "chatcmpl-retried")
    assert Message.objects.get(pk=inbound.pk).reply_attempts == 2


def signed_post(path: str, params: dict[str, str]) -> requests.Response:
    url = f"http://127.0.0.1:{WEB_PORT}{path}"
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)


class OwnRedis:
    """A Redis of this test's own, so stopping it disturbs nobody else's."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(OWN_REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--dir",
                str(self.dir),
                "--pidfile",
                str(self.dir / "redis.pid"),
            ],
            check=True,
        )
        for _ in range(50):
            if self.up():
                return
            time.sleep(0.1)
        raise RuntimeError("own redis did not start")

    def up(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(OWN_REDIS_PORT), "ping"], capture_output=True, text=True, check=False
        )
        return result.stdout.strip() == "PONG"

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(OWN_REDIS_PORT), "shutdown", "nosave"], capture_output=True, check=False
        )
        for _ in range(50):
            if not self.up():
                return
            time.sleep(0.1)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs the redis-server binary")
def test_with_the_broker_down_the_webhook_still_answers_and_the_reply_comes_once_it_is_back(tmp_path):
    redis = OwnRedis(tmp_path)
    redis.start()
    env = process_env(tmp_path, f"redis://127.0.0.1:{OWN_REDIS_PORT}/0")
    logs = [tmp_path / "web.log", tmp_path / "worker.log"]
    web = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(WEB_PORT),
        ],
        env,
        logs[0],
    )
    worker = start(worker_command("--beat", "-s", str(tmp_path / "beat-schedule")), env, logs[1])
    try:
        wait_until(
            lambda: _healthy(),
            30,
            "the web process",
            logs,
        )
        redis.stop()
        params = sms_params("+15553334444", "Anyone there?", MessageSid=new_sid("SM"))
        started = time.monotonic()
        response = signed_post("/webhooks/twilio/sms/", params)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 10
        inbound = Message.objects.get(role=Role.CONTACT)
        assert inbound.reply_state == ReplyState.OWED
        time.sleep(2)  # the recovery task cannot reach the broker either
        assert Message.objects.get(pk=inbound.pk).reply_state == ReplyState.OWED
        redis.start()
        wait_until(
            lambda: Message.objects.filter(pk=inbound.pk, reply_state=ReplyState.DONE).exists(),
            90,
            "the recovered reply",
            logs,
        )
    finally:
        stop(worker)
        stop(web)
        redis.stop()
    assert Message.objects.filter(role=Role.AGENT).count() == 1


def _healthy() -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{WEB_PORT}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
