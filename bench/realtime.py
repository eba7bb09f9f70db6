"""Real-time benchmark: sockets joined to business topics, inbound SMS webhooks, delivery latency.

    .venv/bin/python bench/realtime.py [--sockets 1000] [--topics 100] [--seconds 20]
    .venv/bin/python bench/realtime.py --sockets 10000 --asgi-processes 4 [--kill-one-after 10]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379. It creates its
own database (`bench_realtime`), serves the product with uvicorn (one process) on PostgreSQL and Redis,
opens the sockets (Phoenix protocol, one `staff:business:{business}` topic each, spread evenly; a staff
JWT on `messages:{business}` now receives only that user's own sessions), then posts one
signed SMS webhook a second per topic (to gunicorn workers by default, as in production)
to numbers that belong to those businesses, and measures the time
from sending each webhook to its `message_received` event at every subscriber. Prints p50/p95/p99
latency, lost events, and memory per idle socket (server RSS growth / sockets).

`--asgi-processes N` serves the sockets from N uvicorn processes on ports `--port`, `--port`+10, …
(as N nodes behind a load balancer would), the sockets spread over them in turn; the Redis channel
layer carries every broadcast to all of them. `--kill-one-after S` kills the first of them with
SIGKILL S seconds into the webhooks: its sockets reconnect to the next process and rejoin their
topic, as a client library does. Events for webhooks sent while a socket was away are its
reconnect's cost and are reported apart; an event for a webhook sent after it rejoined (or before
the kill, allowing 0.5 s in flight) that never arrives counts as lost.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import websockets
from benchenv import process_cpu_seconds, stop_process
from cryptography.fernet import Fernet
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
DB = "bench_realtime"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def prepare(env: dict[str, str], topics: int, database: str) -> str:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "from sessions_app.models import Channel\n"
        f"for i in range({topics}):\n"
        "    Channel.objects.create(kind='sms', address=f'+1500555{i:04d}', business_id=f'B{i:04d}')\n"
        "user = get_user_model().objects.create(username='bench-staff', is_staff=True)\n"
        "print(AccessToken.for_user(user))\n"
    )
    out = subprocess.run(
        [python, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


class Poster:
    """Signed SMS webhooks over keep-alive connections, one per thread."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.validator = RequestValidator(token)
        self.local = threading.local()
        self.errors = 0
        self.failed: set[str] = set()  # bodies whose webhook was not answered 200
        self.statuses: dict[str, int] = {}
        self.answered_ms: list[float] = []  # sent -> webhook answered (the message is committed)

    def post(self, topic: int, body: str) -> float:
        path = "/webhooks/twilio/sms/"
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": "AC" + "0" * 32,
            "From": f"+1555{topic:07d}",
            "To": f"+1500555{topic:04d}",
            "Body": body,
            "NumMedia": "0",
        }
        signature = self.validator.compute_signature(f"http://127.0.0.1:{self.port}{path}", params)
        if not hasattr(self.local, "conn"):
            self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = time.perf_counter()
        try:
            self.local.conn.request(
                "POST",
                path,
                urllib.parse.urlencode(params),
                {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
            )
            response = self.local.conn.getresponse()
            response.read()
            self.answered_ms.append((time.perf_counter() - sent) * 1000)
            if response.status != 200:
                self.errors += 1
                self.failed.add(body)
                self.statuses[str(response.status)] = self.statuses.get(str(response.status), 0) + 1
        except OSError as exc:
            self.errors += 1
            self.failed.add(body)
            self.statuses[type(exc).__name__] = self.statuses.get(type(exc).__name__, 0) + 1
            self.local.conn.close()
            del self.local.conn
        return sent


async def run(args: argparse.Namespace) -> None:
    port = args.port
    auth_token = secrets.token_urlsafe(24)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{args.database}",
            "REDIS_URL": args.redis_url,
            "DEBUG": "false",
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "TWILIO_AUTH_TOKEN": auth_token,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "LOG_LEVEL": "WARNING",
        }
    )
    jwt = prepare(env, args.topics, args.database)
    uvicorn = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1"]
    socket_ports = [port + 10 * n for n in range(args.asgi_processes)]
    servers = [
        subprocess.Popen(
            [*uvicorn, "--port", str(p), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT,
            env={**env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{p}"},
        )
        for p in socket_ports
    ]
    # Production layout: HTTP (the webhooks) on gunicorn workers, sockets on the ASGI server; the
    # Redis channel layer carries each broadcast from the former to the latter.
    # Webhooks on uvicorn go to the last socket process, which no option kills.
    webhook_port = socket_ports[-1]
    web = None
    if args.webhooks == "gunicorn":
        webhook_port = port + 1
        gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-w", str(args.workers)]
        web = subprocess.Popen(
            [*gunicorn, "-b", f"127.0.0.1:{webhook_port}", "--log-level", "warning"],
            cwd=ROOT,
            env={**env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{webhook_port}"},
        )
    try:
        for check_port in {*socket_ports, webhook_port}:
            for _ in range(100):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", check_port, timeout=1)
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    await asyncio.sleep(0.1)
        time.sleep(0.5)
        idle_before = sum(rss_kb(process.pid) for process in servers)

        received: dict[str, list[tuple[int, float]]] = {}
        sent_at: dict[str, float] = {}
        # Per socket, the times it was joined: [joined, dropped) intervals (dropped inf while up).
        joined_spans: dict[int, list[list[float]]] = {}
        reconnects = 0
        stopping = False

        async def subscriber(index: int, ready: asyncio.Event, joined: list[int]) -> None:
            nonlocal reconnects
            topic = f"staff:business:B{index % args.topics:04d}"
            at = index % len(socket_ports)
            while not stopping:
                url = f"ws://127.0.0.1:{socket_ports[at]}/socket/websocket?vsn=2.0.0&token={jwt}"
                try:
                    async with websockets.connect(url, max_queue=None, ping_interval=None) as ws:
                        await ws.send(json.dumps(["1", "1", topic, "phx_join", {}]))
                        async for raw in ws:
                            now = time.perf_counter()
                            frame = json.loads(raw)
                            if frame[3] == "phx_reply" and frame[1] == "1":
                                joined_spans.setdefault(index, []).append([now, float("inf")])
                                if index not in joined:
                                    joined.append(index)
                                    if len(joined) == args.sockets:
                                        ready.set()
                            elif frame[3] == "message_received":
                                received.setdefault(frame[4]["content"], []).append((index, now))
                except (OSError, websockets.ConnectionClosed):
                    pass
                if stopping:
                    return
                spans = joined_spans.get(index)
                if spans and spans[-1][1] == float("inf"):
                    spans[-1][1] = time.perf_counter()
                reconnects += 1
                at = (at + 1) % len(socket_ports)  # the load balancer sends it to another node
                await asyncio.sleep(0.2)

        ready = asyncio.Event()
        joined: list[int] = []
        tasks = []
        for index in range(args.sockets):
            tasks.append(asyncio.create_task(subscriber(index, ready, joined)))
            if index % 100 == 99:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(ready.wait(), timeout=120)
        await asyncio.sleep(1)
        idle_after = sum(rss_kb(process.pid) for process in servers)

        poster = Poster(webhook_port, auth_token)

        # CPU of the socket processes (and of this client, on the same cores) over the webhooks: what
        # each event costs to fan out, which holds on a busy machine where latency does not.
        # (A process --kill-one-after killed counts only the CPU it spent before the run: none.)
        def sockets_cpu() -> dict[int, float]:
            return {process.pid: process_cpu_seconds(process.pid) for process in servers}

        cpu_before, client_before = sockets_cpu(), time.process_time()
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=args.clients)
        subscribers_per_topic = args.sockets / args.topics
        started = time.perf_counter()
        pending = []
        killed = False
        for second in range(args.seconds):
            tick = started + second
            if args.kill_one_after is not None and not killed and second >= args.kill_one_after:
                servers[0].kill()  # SIGKILL
                killed = True
            for topic in range(args.topics):
                at = tick + topic / args.topics
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = f"bench-{topic}-{second}"

                def send(topic: int = topic, body: str = body) -> None:
                    sent_at[body] = poster.post(topic, body)

                pending.append(loop.run_in_executor(pool, send))
        await asyncio.gather(*pending)
        await asyncio.sleep(2)
        cpu_after = sockets_cpu()
        cpu_spent = sum(max(cpu_after[pid] - cpu_before[pid], 0.0) for pid in cpu_before)
        client_spent = time.process_time() - client_before
        stopping = True
        for task in tasks:
            task.cancel()

        latencies = []
        for body, arrivals in received.items():
            if body in sent_at:
                latencies.extend((t - sent_at[body]) * 1000 for _, t in arrivals)
        # Owed: each webhook's event at each socket of its topic that was joined when it was sent
        # (and not about to drop: 0.5 s in flight); the rest fell in a socket's reconnect.
        owed = away = missing = 0
        for body, sent in sent_at.items():
            if body in poster.failed:
                continue  # no message stored, so no event owed
            topic = int(body.split("-")[1])
            got = {index for index, _ in received.get(body, [])}
            for index in range(topic, args.sockets, args.topics):
                spans = joined_spans.get(index, [])
                if any(start <= sent < end - 0.5 for start, end in spans):
                    owed += 1
                    missing += index not in got
                elif index not in got:
                    away += 1
        expected = int(len(sent_at) * subscribers_per_topic)
        print(
            f"sockets: {args.sockets} on {args.topics} topics; webhooks: {len(sent_at)} "
            f"({args.topics}/s for {args.seconds}s), webhook errors: {poster.errors} {poster.statuses or ''}"
        )
        print(f"events expected: {expected}, received: {len(latencies)}, lost: {expected - len(latencies)}")
        print(
            f"socket processes: {len(servers)}; reconnects: {reconnects}; events owed to joined sockets: "
            f"{owed}, lost: {missing}; missed while reconnecting: {away}"
        )
        if latencies:
            print(
                f"CPU per event delivered: socket processes {cpu_spent / len(latencies) * 1e6:.0f} µs, "
                f"this client {client_spent / len(latencies) * 1e6:.0f} µs ({cpu_spent:.1f} s and "
                f"{client_spent:.1f} s over the webhooks and the 2 s after)"
            )
            print(
                f"latency webhook sent -> event at subscriber: p50 {statistics.median(latencies):.1f} ms, "
                f"p95 {percentile(latencies, 95):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
                f"max {max(latencies):.1f} ms"
            )
        if poster.answered_ms:
            answered = poster.answered_ms
            print(
                f"webhook answered (message committed, broadcast queued): p50 "
                f"{statistics.median(answered):.1f} ms, p95 {percentile(answered, 95):.1f} ms, "
                f"p99 {percentile(answered, 99):.1f} ms, max {max(answered):.1f} ms"
            )
        per_socket = (idle_after - idle_before) / args.sockets
        print(
            f"server RSS: {idle_before / 1024:.1f} MB idle, {idle_after / 1024:.1f} MB with sockets; "
            f"about {per_socket:.1f} KB per idle socket"
        )
    finally:
        for process in (*servers, web):
            if process is not None:
                stop_process(process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16, help="concurrent webhook senders")
    parser.add_argument("--port", type=int, default=18650)
    parser.add_argument(
        "--webhooks",
        choices=["gunicorn", "uvicorn"],
        default="gunicorn",
        help="which server takes the webhooks (sockets are always on uvicorn)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--database", default=DB, help="recreated, then left for inspection")
    parser.add_argument("--asgi-processes", type=int, default=1, help="uvicorn processes holding sockets")
    parser.add_argument(
        "--kill-one-after",
        type=int,
        default=None,
        help="seconds into the webhooks: SIGKILL one socket process",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
