"""CPU per agent reply in a Celery worker and in PostgreSQL (for docs/scaling.md's sizing).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_worker \\
        .venv/bin/python bench/worker_cpu.py --redis-url redis://127.0.0.1:6379/12 [--messages 2000]

Recreates the database named by DATABASE_URL (it must start with `bench` or end in `_bench…`: it is
dropped), stores `--messages` inbound SMS owed a reply as ingest stores them, queues one reply task
each on the Redis database given (use one of its own: it is flushed), and runs one worker process
(`--pool solo`, the `builtin` agent, Twilio sending off, so no network call) until every message is
answered. Prints the worker's CPU and its PostgreSQL backend's CPU per reply, measured from /proc
after a warm-up of 100 replies, and the replies per second of that one process.

Not included: the agent's own time (a hosted model answers in seconds, the worker waits on I/O) and
the Twilio send of an SMS reply (one HTTPS request and one UPDATE, in a task of its own).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from benchenv import BENCH_FIELD_KEY, cpu_seconds, process_cpu_seconds, stop_process

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 100


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    name = urlsplit(database_url).path.lstrip("/")
    if not (name.startswith("bench") or "_bench" in name) or not args.redis_url:
        sys.exit("set DATABASE_URL to a database named bench… (it is recreated) and give --redis-url")
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(args.redis_url).flushdb()

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-a-secret-" + "x" * 40,
        "ALLOWED_HOSTS": "127.0.0.1",
        "FIELD_ENCRYPTION_KEYS": BENCH_FIELD_KEY,
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "TWILIO_ACCOUNT_SID": "",
        "AGENT_BACKEND": "builtin",
        "LOG_LEVEL": "WARNING",
        "SESSION_SWEEP_INTERVAL": "3600",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.utils import timezone

    from config.celery_app import app
    from sessions_app.delivery import queue
    from sessions_app.models import (
        Channel,
        ChannelKind,
        Contact,
        Direction,
        Message,
        ReplyState,
        Role,
        Session,
    )

    app.conf.task_always_eager = False
    channel = Channel.objects.create(kind=ChannelKind.SMS, address="+15005550006")
    now = timezone.now()
    total = WARMUP + args.messages
    contacts = Contact.objects.bulk_create(Contact(phone=f"+1555{n:07d}") for n in range(total))
    sessions = Session.objects.bulk_create(
        Session(
            channel=channel,
            channel_kind=channel.kind,
            contact=contact,
            message_count=1,
            first_message_at=now,
            last_message_at=now,
            last_activity_at=now,
        )
        for contact in contacts
    )
    inbound = Message.objects.bulk_create(
        Message(
            session=session,
            direction=Direction.INBOUND,
            role=Role.CONTACT,
            content="Hello, what are your opening hours?",
            reply_state=ReplyState.OWED,
            created_at=now,
        )
        for session in sessions
    )
    ids = [message.pk for message in inbound]
    for message_id in ids[:WARMUP]:
        queue.enqueue(queue.PRODUCE_REPLY, message_id)

    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"]
    command += ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
    worker = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        answered = Message.objects.filter(role=Role.AGENT)
        while answered.count() < WARMUP:
            time.sleep(0.2)

        def backend_cpu() -> float:
            return cpu_seconds(lambda _parent, command: f" {name} " in command)

        worker_before, backend_before, began = (
            process_cpu_seconds(worker.pid),
            backend_cpu(),
            time.monotonic(),
        )
        for message_id in ids[WARMUP:]:
            queue.enqueue(queue.PRODUCE_REPLY, message_id)
        while answered.count() < total:
            time.sleep(0.1)
        elapsed = time.monotonic() - began
        worker_cpu = process_cpu_seconds(worker.pid) - worker_before
        database_cpu = backend_cpu() - backend_before
    finally:
        stop_process(worker)
    assert not Message.objects.filter(role=Role.CONTACT).exclude(reply_state=ReplyState.DONE).exists()
    n = args.messages
    print(
        f"{n} replies in {elapsed:.1f} s by one worker process: {n / elapsed:.0f} replies/s; "
        f"CPU per reply: worker {worker_cpu / n * 1000:.2f} ms, PostgreSQL backends "
        f"{database_cpu / n * 1000:.2f} ms (this script's own backend included: it polls the count)"
    )


if __name__ == "__main__":
    main()
