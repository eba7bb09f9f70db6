"""Event webhooks under load: deliveries per second and commit-to-receiver latency, ingest beside it.

    .venv/bin/python bench/event_webhooks.py --redis-url redis://127.0.0.1:6379/12

What runs, each in its own process(es):
- our app under `gunicorn -w 4` (as bench/ingest.py serves it), taking signed SMS webhooks at a fixed
  `--rate` (default 200/s, open loop, bench/ingest.py's client: each request timed from the moment
  it was scheduled) for `--seconds`; each stores one message, whose `message.created` event the
  outbox writes in the same transaction;
- `--endpoints` (default 5) endpoints subscribed to `message.created`, served by one receiver
  process (`--receiver asyncio`, the default: one event loop, a minimal HTTP/1.1 protocol with
  keep-alive, answering 200 at once and noting each request's arrival time; `threads`:
  http.server, a thread per connection, twice its CPU): `--rate` times `--endpoints` deliveries per
  second are due;
- one Celery worker (`--concurrency` prefork processes) on a queue of its own for deliveries
  (EVENT_DELIVERY_QUEUE=events), so the reply tasks the messages also queue stay in Redis unanswered,
  as in bench/ingest.py: what is measured is ingest and delivery, not the agent.

It prints the ingest latency (p50/p99), the deliveries received per second over the load, and the
latency from each event's `created_at` (written inside the change's transaction, a few milliseconds
before its commit: the figure is if anything too high) to its arrival at the receiver (p50/p95/p99).
Then the CPU per delivery of the worker, the receiver, the database's PostgreSQL backends and
gunicorn's workers (from /proc, over the load). Targets (issue 21): 1,000 deliveries/s, p95 ≤ 1 s,
ingest p99 ≤ 50 ms. The database `--database` is dropped and created again, and dropped at the end.

`--backlog N` writes N events first (each due to every endpoint) and times the delivery of them
all, with the CPU per delivery from the first poll that saw one delivered; `--inline` runs
`deliver_due` in one plain process instead of Celery (each endpoint in turn), and `--profile FILE`
records that process with py-spy (`--gil`, raw format: what holds the interpreter, i.e. CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from benchenv import process_cpu_seconds, processes_cpu, stop_process  # noqa: E402
from ingest import (  # noqa: E402
    SMS_PATH,
    fixed_rate,
    free_ports,
    gunicorn_command,
    product_env,
    psql,
    raw_request,
    serve,
    signed_sms_bodies,
)


def receiver_child(ports: list[int], out: Path, kind: str = "asyncio") -> int:
    """The endpoints: one server per port, answering 200 at once; writes (port, webhook-id, arrival)
    on SIGTERM. `asyncio`: one event loop, a minimal HTTP/1.1 protocol (keep-alive, Content-Length
    bodies), so the receivers cost the machine little; `threads`: http.server, a thread per connection."""
    seen: list[tuple[int, str, float]] = []
    if kind == "threads":
        return _threaded_receiver(ports, out, seen)
    loop = asyncio.new_event_loop()
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    class Endpoint(asyncio.Protocol):
        def __init__(self, port: int) -> None:
            self.port = port
            self.buffer = b""
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1").lower()
                length, webhook_id = 0, ""
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name == "content-length":
                        length = int(value)
                    elif name == "webhook-id":
                        webhook_id = value.strip()
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                seen.append((self.port, webhook_id, time.time()))
                assert self.transport is not None
                self.transport.write(answer)

    for port in ports:
        loop.run_until_complete(
            loop.create_server(functools.partial(Endpoint, port), "127.0.0.1", port, backlog=128)
        )
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    print("ready", flush=True)
    loop.run_forever()
    out.write_text(json.dumps(seen))
    return 0


def _threaded_receiver(ports: list[int], out: Path, seen: list[tuple[int, str, float]]) -> int:
    lock = threading.Lock()

    def handler(port: int) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                with lock:
                    seen.append((port, self.headers.get("webhook-id", ""), arrived))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    for port in ports:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler(port))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    with lock:
        out.write_text(json.dumps(seen))
    return 0


def cpu_now(worker: int, receiver: int, database: str, web: int | None = None) -> dict[str, dict[int, float]]:
    """CPU seconds so far, per process, of the delivery worker (its process and children), the
    receiver, the PostgreSQL backends of the database and (under load) gunicorn's workers."""
    worker_key = str(worker)
    sample = {
        "worker": {worker: process_cpu_seconds(worker), **processes_cpu(lambda ppid, _: ppid == worker_key)},
        "receiver": {receiver: process_cpu_seconds(receiver)},
        "postgres": processes_cpu(
            lambda _, command: command.startswith("postgres: ") and f" {database} " in command
        ),
    }
    if web is not None:
        web_key = str(web)
        sample["web"] = processes_cpu(lambda ppid, _: ppid == web_key)
    return sample


def cpu_line(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], deliveries: int) -> str:
    """CPU per delivery of each part between two samples: the processes alive at the second, each
    from its first sample (or its start); a process gone by then (a poll's backend) is left out."""
    parts = []
    for name in ("worker", "receiver", "postgres", "web"):
        if name in after:
            spent = sum(seconds - before[name].get(pid, 0.0) for pid, seconds in after[name].items())
            parts.append(f"{name} {spent / max(deliveries, 1) * 1000:.2f} ms")
    return f"  CPU per delivery ({deliveries} deliveries): " + ", ".join(parts)


def driver_child() -> int:
    """The delivery worker's work in this process, without Celery: each endpoint's `deliver_due`, in
    turn, until nothing is owed (for CPU per delivery, and to profile with py-spy)."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from sessions_app.events.dispatch import deliver_due
    from sessions_app.models import Delivery, EventEndpoint

    endpoints = list(EventEndpoint.objects.values_list("pk", flat=True))
    try:
        while Delivery.objects.exclude(state="delivered").exists():
            for endpoint_id in endpoints:
                deliver_due(endpoint_id)
        signal.pause()  # alive (and its database connection too) until the last CPU sample is taken
    except KeyboardInterrupt:
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="bench_events")
    parser.add_argument("--rate", type=float, default=200, help="inbound SMS per second")
    parser.add_argument("--seconds", type=int, default=20, help="seconds of load")
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=5, help="the delivery worker's processes")
    parser.add_argument("--pool", default="prefork", help="the delivery worker's pool (prefork, threads)")
    parser.add_argument("--ports", default="18260-18299", help="loopback ports to use")
    parser.add_argument(
        "--receiver", choices=["asyncio", "threads"], default="asyncio", help="the endpoints' server"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="instead of the load: this many events written first (each due to every endpoint), then "
        "the time the worker takes to deliver them all (delivery capacity alone)",
    )
    parser.add_argument(
        "--inline",
        action="store_true",
        help="with --backlog: one plain process calls deliver_due instead of a Celery worker",
    )
    parser.add_argument(
        "--profile", default="", help="with --inline: py-spy records the process to this file (raw)"
    )
    parser.add_argument("--child", choices=["receiver", "driver"], help=argparse.SUPPRESS)
    parser.add_argument("--child-ports", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "receiver":
        ports = [int(p) for p in args.child_ports.split(",")]
        return receiver_child(ports, Path(args.child_out), args.receiver)
    if args.child == "driver":
        return driver_child()
    if not args.redis_url:
        raise SystemExit("--redis-url is needed: the broker of the web processes and the worker")

    low, high = (int(part) for part in args.ports.split("-"))
    web_port, *hook_ports = free_ports(1 + args.endpoints, range(low, high + 1))
    origin = f"http://127.0.0.1:{web_port}"
    database_url = urllib.parse.urlsplit(args.admin_url)._replace(path=f"/{args.database}").geturl()
    psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{args.database}"')
    psql(args.admin_url, "postgres", f'CREATE DATABASE "{args.database}"')
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    env = {
        **product_env(database_url, origin, str(work), args.redis_url),
        "EVENT_DELIVERY_QUEUE": "events",
        "EVENT_WEBHOOKS_ALLOW_PRIVATE": "true",
        "LOG_LEVEL": "WARNING",
    }
    run = {"cwd": ROOT, "env": env, "check": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], **run)  # type: ignore[call-overload]
    subprocess.run(["redis-cli", "-u", args.redis_url, "FLUSHDB"], check=False, capture_output=True)
    urls = [f"http://127.0.0.1:{port}/hook" for port in hook_ports]
    create = (
        "from sessions_app.models import EventEndpoint\n"
        f"for url in {urls!r}:\n"
        "    EventEndpoint.objects.create(url=url, event_types=['message.created'])\n"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", create], **run)  # type: ignore[call-overload]

    arrivals = work / "arrivals.json"
    receiver = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            "receiver",
            "--receiver",
            args.receiver,
            "--child-ports",
            ",".join(map(str, hook_ports)),
            "--child-out",
            str(arrivals),
        ],
        stdout=subprocess.PIPE,
    )
    assert receiver.stdout is not None
    receiver.stdout.readline()
    if args.backlog:
        backlog = (
            "from sessions_app.delivery.outbound import record_outbound_message\n"
            "from sessions_app.ingest.channels import channel_for\n"
            "from sessions_app.lifecycle.sessions import create_session\n"
            "from sessions_app.models import Contact\n"
            "channel = channel_for('api', '')\n"
            f"for n in range({args.backlog} // 10):\n"
            "    contact = Contact.objects.create(external_user_id=f'u{n}', business_id='B')\n"
            "    session, _ = create_session(channel, contact)\n"
            "    for m in range(10):\n"
            "        record_outbound_message(session, f'message {m}', role='staff')\n"
        )
        subprocess.run([sys.executable, "manage.py", "shell", "-c", backlog], **run)  # type: ignore[call-overload]
    worker_started = time.time()
    if args.inline:
        command = [sys.executable, __file__, "--child", "driver"]
        if args.profile:
            spy = Path(sys.executable).with_name("py-spy")
            record = ["record", "--gil", "-r", "250", "-f", "raw", "-o", args.profile, "--"]
            command = [str(spy), *record, *command]
    else:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "events",
            "--concurrency",
            str(args.concurrency),
            "--pool",
            args.pool,
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ]
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=(work / "worker.log").open("wb"), stderr=subprocess.STDOUT
    )
    try:
        if args.backlog:
            return drain(args, worker, receiver, arrivals, worker_started)
        bodies = signed_sms_bodies(int(args.rate * args.seconds), env["TWILIO_AUTH_TOKEN"], origin, seed=7)
        requests = [
            raw_request(SMS_PATH, body, f"X-Twilio-Signature: {signature}\r\n") for body, signature in bodies
        ]
        warm = signed_sms_bodies(100, env["TWILIO_AUTH_TOKEN"], origin, seed=8)
        with serve(
            "ours",
            gunicorn_command("config.wsgi:application", web_port),
            ROOT,
            env,
            web_port,
            SMS_PATH,
            args.database,
            SMS_PATH,
            405,  # a GET of the webhook: answered at once, no database
        ) as server:
            asyncio.run(
                fixed_rate(
                    server.port,
                    [raw_request(SMS_PATH, b, f"X-Twilio-Signature: {s}\r\n") for b, s in warm],
                    50,
                )
            )
            time.sleep(3)  # the warm-up's deliveries go out before the measured load starts
            load_before = os.getloadavg()
            cpu_before = cpu_now(worker.pid, receiver.pid, args.database, server.process.pid)
            delivered_before = int(delivered_count(args))
            load_started = time.time()
            ingest = asyncio.run(fixed_rate(server.port, requests, args.rate))
            load_ended = time.time()
            cpu_after = cpu_now(worker.pid, receiver.pid, args.database, server.process.pid)
            delivered_during = int(delivered_count(args)) - delivered_before
            load_after = os.getloadavg()
            expected = (len(warm) + ingest.answered) * args.endpoints
            deadline = time.time() + 60
            while time.time() < deadline:
                left = psql(
                    args.admin_url,
                    args.database,
                    "SELECT count(*) FROM sessions_app_delivery WHERE state <> 'delivered'",
                )
                if left == "0":
                    break
                time.sleep(0.5)
            created = dict(
                line.split("|")
                for line in psql(
                    args.admin_url,
                    args.database,
                    "SELECT webhook_id, extract(epoch FROM created_at) FROM sessions_app_event",
                ).splitlines()
            )
            stats = psql(
                args.admin_url,
                args.database,
                "SELECT state, count(*) FROM sessions_app_delivery GROUP BY state ORDER BY state",
            )
    finally:
        stop_process(worker)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
    seen = json.loads(arrivals.read_text()) if arrivals.exists() else []
    psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{args.database}"')

    during = [arrived for _, _, arrived in seen if load_started <= arrived <= load_ended]
    # Sustained: the load's own events (created once it started) over the time from the first of
    # them to arrive to the last. The window above also counts the first latency's worth of the load
    # as time without arrivals, so at an offered 1,000/s it reads below 1,000/s even when every
    # delivery keeps pace; this one reads the offered rate exactly when delivery keeps up with it,
    # and less when a backlog builds (the last arrivals come late).
    measured = sorted(
        arrived for _, webhook_id, arrived in seen if float(created.get(webhook_id, 0)) >= load_started
    )
    sustained = (len(measured) - 1) / (measured[-1] - measured[0]) if len(measured) > 1 else 0.0
    latencies = sorted(
        (arrived - float(created[webhook_id])) * 1000
        for _, webhook_id, arrived in seen
        if webhook_id in created and float(created[webhook_id]) >= load_started
    )
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    print(
        f"event webhooks, {datetime.now():%Y-%m-%d %H:%M}: {args.endpoints} endpoints, "
        f"ingest at {args.rate:g}/s for {args.seconds} s, delivery worker --pool {args.pool} "
        f"--concurrency {args.concurrency}, receiver {args.receiver}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"  ingest: {ingest.answered}/{ingest.sent} answered 200, p50 {ingest.p50_ms:.1f} ms, "
        f"p99 {ingest.p99_ms:.1f} ms, max {ingest.max_ms:.1f} ms"
    )
    print(
        f"  deliveries received during the load: {len(during)} in {load_ended - load_started:.1f} s = "
        f"{len(during) / max(load_ended - load_started, 0.001):,.0f}/s; in all {len(seen)} of {expected} due"
    )
    print(
        f"  sustained: the load's {len(measured)} deliveries from the first arrival to the last, "
        f"{sustained:,.0f}/s (offered {args.rate * args.endpoints:,.0f}/s)"
    )
    print(
        f"  commit → receiver: p50 {cuts[49]:.0f} ms, p95 {cuts[94]:.0f} ms, p99 {cuts[98]:.0f} ms, "
        f"max {latencies[-1] if latencies else 0:.0f} ms ({len(latencies)} deliveries)"
    )
    print(
        cpu_line(cpu_before, cpu_after, delivered_during)
        + " (postgres: ingest's backends too; web: all of ingest)"
    )
    print("  delivery states at the end: " + ", ".join(stats.splitlines()))
    return 0


def delivered_count(args: argparse.Namespace) -> str:
    return psql(
        args.admin_url, args.database, "SELECT count(*) FROM sessions_app_delivery WHERE state = 'delivered'"
    )


def drain(
    args: argparse.Namespace,
    worker: subprocess.Popen[bytes],
    receiver: subprocess.Popen[bytes],
    arrivals: Path,
    started: float,
) -> int:
    """The backlog mode: wait until every delivery is delivered, then the rate it was done at and the
    CPU per delivery (from the first poll that saw some delivered, so the worker's start-up is out)."""
    total = int(psql(args.admin_url, args.database, "SELECT count(*) FROM sessions_app_delivery"))
    deadline = time.time() + 600
    first: tuple[int, dict[str, dict[int, float]]] | None = None
    last: tuple[int, dict[str, dict[int, float]]] | None = None
    latest: dict[str, dict[int, float]] = {}
    load = os.getloadavg()
    while time.time() < deadline:
        done = int(delivered_count(args))
        sample = cpu_now(worker.pid, receiver.pid, args.database)
        if done and first is None:
            first = (done, sample)
        if first is not None:
            # Each process's CPU as last seen: the worker closes its database connections when
            # its tasks end, so their backends are gone by the final sample.
            for name, spent in sample.items():
                latest.setdefault(name, {}).update(spent)
            last = (done, latest)
        if done == total:
            break
        time.sleep(0.5)
    if args.inline:  # SIGINT: py-spy writes its profile; the driver stops
        worker.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=60)
    stop_process(worker)
    receiver.send_signal(signal.SIGTERM)
    receiver.wait(timeout=30)
    seen = json.loads(arrivals.read_text())
    psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{args.database}"')
    times = sorted(arrived for _, _, arrived in seen)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    driver = (
        "in-process driver" if args.inline else f"worker --pool {args.pool} --concurrency {args.concurrency}"
    )
    print(
        f"event webhooks backlog, {datetime.now():%Y-%m-%d %H:%M}: {total} deliveries due to "
        f"{args.endpoints} endpoints, {driver}, receiver {args.receiver}; load average {load[0]:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"  received {len(seen)} ({len({w for _, w, _ in seen})} distinct per endpoint pairs: "
        f"{len(set((p, w) for p, w, _ in seen))}); first after {times[0] - started:.1f} s of worker start, "
        f"then {len(seen) / max(span, 0.001):,.0f} deliveries/s over {span:.1f} s"
    )
    if first is not None and last is not None and last[0] > first[0]:
        print(cpu_line(first[1], last[1], last[0] - first[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
