"""The README's embedded default runs its beat schedule: no Redis, one worker.

`python3 run.py serve` starts exactly `run.worker_command(env)`: a Celery worker with beat embedded
(`--beat`) on the `filesystem://` folder broker in DATA_DIR, against the embedded PostgreSQL it
started. These tests start that command in a fresh DATA_DIR with short intervals, on a database of
its own on the suite's PostgreSQL server, and watch that database: the lifecycle sweep abandons a
due session, and the recovery task re-queues a reply that is owed but whose task never reached a
broker, which the same worker then answers.

They never touch the suite's own test database (no `django_db`): the worker's environment is
stripped of REDIS_URL and the rest, whatever the suite itself runs on. Rows are written and read by
`manage.py shell` in the worker's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import run
from tests.servers import NOT_INHERITED, ROOT, scratch_database

WAIT = 60.0  # seconds; with one-second intervals both outcomes normally come within a few
POLL = 0.5

CREATE_ROWS = """
import json
from datetime import timedelta
from django.utils import timezone
from sessions_app.models import (
    Channel, ChannelKind, Contact, Direction, Message, ReplyState, Role, Session, SessionStatus,
)

now = timezone.now()
channel = Channel.objects.create(kind=ChannelKind.SMS, address="+15005550006")


def session(phone, last_activity_at):
    return Session.objects.create(
        channel=channel,
        channel_kind=channel.kind,
        contact=Contact.objects.create(phone=phone),
        status=SessionStatus.ACTIVE,
        message_count=1,
        first_message_at=last_activity_at,
        last_message_at=last_activity_at,
        last_activity_at=last_activity_at,
        created_at=last_activity_at,
        updated_at=last_activity_at,
    )


# Quiet for two hours: due for abandonment (SESSION_ABANDON_AFTER is half an hour).
due = session("+15550000001", now - timedelta(hours=2))
# Stored with its reply owed two minutes ago, as ingest stores it, but no task was ever queued
# (the broker was down): only the recovery task can get it answered. Its session is not due.
waiting = session("+15550000002", now - timedelta(minutes=2))
inbound = Message.objects.create(
    session=waiting,
    direction=Direction.INBOUND,
    role=Role.CONTACT,
    content="Hello, anyone there?",
    reply_state=ReplyState.OWED,
    created_at=now - timedelta(minutes=2),
)
print(json.dumps({"due_session": str(due.pk), "inbound": inbound.pk}))
"""

READ_STATE = """
import json
from sessions_app.models import Message, Role, Session, StatusChange

ids = json.loads({ids!r})
inbound = Message.objects.get(pk=ids["inbound"])
replies = list(
    Message.objects.filter(in_reply_to=inbound, role=Role.AGENT).values_list("content", flat=True)
)
print(json.dumps({{
    "due_session_status": Session.objects.get(pk=ids["due_session"]).status,
    "sweep_changes": list(
        StatusChange.objects.filter(session_id=ids["due_session"], actor="system:sweep")
        .values_list("from_status", "to_status")
    ),
    "reply_state": inbound.reply_state,
    "replies": replies,
}}))
"""


@dataclass
class EmbeddedWorker:
    env: dict[str, str]
    ids: dict[str, Any]
    log: Path
    process: subprocess.Popen[bytes]

    def state(self) -> dict[str, Any]:
        return manage_shell(self.env, READ_STATE.format(ids=json.dumps(self.ids)))

    def log_excerpt(self, head: int = 40, tail: int = 60) -> str:
        """The worker log's start (start-up, errors) and end; the beat's repeats fill the middle."""
        lines = self.log.read_text(errors="replace").splitlines()
        if len(lines) > head + tail:
            lines = [*lines[:head], f"[... {len(lines) - head - tail} lines ...]", *lines[-tail:]]
        return "\n".join(lines)

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The worker database's state once `condition` holds for it; fails after WAIT seconds, or
        as soon as the worker has exited, with the worker's log."""
        deadline = time.monotonic() + WAIT
        while True:
            state = self.state()
            if condition(state):
                return state
            exited = self.process.poll()
            if exited is not None or time.monotonic() > deadline:
                why = f"the worker exited with {exited}" if exited is not None else f"{WAIT:.0f} s passed"
                pytest.fail(
                    f"{why} before {what}; last state: {state}\n"
                    f"--- worker log ({self.log})\n{self.log_excerpt()}"
                )
            time.sleep(POLL)


def embedded_env(data_dir: Path, database_url: str) -> dict[str, str]:
    """What `run.py serve` hands its worker on a machine with nothing configured (but the database
    it starts), with short intervals so the schedule shows within seconds."""
    env = run.local_env()
    for name in NOT_INHERITED:
        env.pop(name, None)
    env.update(
        DEBUG="true",  # what `serve` sets when DEBUG is not given (run.local_env)
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        SESSION_SWEEP_INTERVAL="1",
        TASK_RECOVERY_INTERVAL="1",
        TASK_RECOVERY_GRACE="0",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(run.PYTHON), "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def manage_shell(env: dict[str, str], code: str) -> dict[str, Any]:
    """Run `code` in `manage.py shell` against the worker's database; its last line is JSON."""
    output = manage(env, "shell", "-c", textwrap.dedent(code))
    return json.loads(output.strip().splitlines()[-1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Like `run.py serve`'s stop: TERM, and KILL after 10 s, since a worker with embedded beat can
    hang in its warm shutdown. The worker has a process group of its own (its pool and beat
    processes are in it), so a kill leaves none of them behind."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    # Pool or beat processes the main process left behind on its way out.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def embedded_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWorker]:
    data_dir = tmp_path_factory.mktemp("embedded") / "data"
    with scratch_database("embedded_beat") as database_url:
        env = embedded_env(data_dir, database_url)
        manage(env, "migrate", "--noinput", "-v0")
        ids = manage_shell(env, CREATE_ROWS)
        log = data_dir / "worker.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                run.worker_command(env),
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield EmbeddedWorker(env, ids, log, process)
        finally:
            stop(process)


def test_the_embedded_beat_abandons_a_due_session(embedded_worker):
    state = embedded_worker.wait_for(
        lambda state: state["due_session_status"] == "abandoned" and bool(state["sweep_changes"]),
        "the sweep abandoned the session quiet for two hours",
    )
    assert state["sweep_changes"] == [["active", "abandoned"]]


def test_the_embedded_beat_requeues_an_owed_reply_and_the_worker_answers_it(embedded_worker):
    state = embedded_worker.wait_for(
        lambda state: state["reply_state"] == "done" and bool(state["replies"]),
        "the recovery task re-queued the owed reply and the worker stored the agent's answer",
    )
    assert len(state["replies"]) == 1
    assert state["replies"][0].strip()
