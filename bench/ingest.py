#!/usr/bin/env python3
"""Inbound-SMS ingest benchmark: the product under gunicorn on PostgreSQL, against the yardstick.

    .venv/bin/python bench/ingest.py [--rounds 3] [--seconds 8] [--warmup 3] [--rate 200]

Both sides are measured by one method (see bench/README.md for what it needs installed):
1. two fresh PostgreSQL databases: `bench_ingest` (migrated) for ours, `bench_ingest_ref` (the
   yardstick's schema.sql) for the yardstick's refapp;
2. both servers are started once, side by side, each with plain `gunicorn -w 4` (sync workers,
   the same flags): ours serves `config.wsgi:application` with production settings (DEBUG off,
   signatures checked, REDIS_URL passed on: Celery's broker, the cache and the channel layer on
   Redis), the yardstick serves `refapp:application`; both stay up until the end of the run;
3. both are warmed the same way: one wrk burst of `--warmup` seconds each (wrk -t2 -c16), ours
   then the yardstick's;
4. throughput in `--rounds` rounds per side (default 3) of `--seconds` each (default 8), alternating
   ours, theirs, ours, theirs, ... with wrk -t2 -c16; after every burst the script waits until the
   server's accept queue is empty, so no burst's backlog runs into the next one;
5. every request on both sides carries a MessageSid never sent before: "SM", 8 hex digits of the
   burst, 4 of the wrk thread, 20 of that thread's counter. The yardstick's requests come from
   bench/reference_post.lua (the form of its post.lua, whose ids repeat: see that file), ours from
   bench/signed_sms.lua over requests signed beforehand (wrk's Lua has no HMAC), built the same way;
6. latency at a fixed open-loop rate (`--rate`, 200 requests/s, for `--rate-seconds`), each request
   timed from its scheduled send time so queueing in the server counts: ours, then the yardstick's;
7. checks, on both sides, that every request answered 200 was stored exactly once (on the
   yardstick's side this also proves its ids never collided: refapp answers a repeated id with 200
   and stores nothing), and reads each gunicorn worker's peak resident memory (VmHWM).

It prints every round, each side's median, the ratio of the medians (ours / theirs) and the targets:
ratio >= 0.45, p99 at 200 requests/s <= 50 ms, peak RSS <= 150 MB per worker, exactly once.
Exit status 0 when every target is met, 1 when one is missed, 2 when the run itself failed
(including a yardstick that answered errors or stored fewer messages than it acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchenv import cpu_seconds, stop_process
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SMS_PATH = "/webhooks/twilio/sms/"
REF_PATH = "/sms"  # the yardstick's refapp
OUR_NUMBER = "+15005550006"
WORKERS = 4  # the yardstick's run.sh: gunicorn -w 4
WRK_THREADS, WRK_CONNECTIONS = 2, 16  # the yardstick's run.sh: wrk -t2 -c16
PHONES = 100_000  # the yardstick's post.lua: numbers drawn from 100,000
SIGNED_PER_SECOND = 4000  # requests signed per second of a burst of ours: more than it can answer
TARGET_RATIO, TARGET_P99_MS, TARGET_WORKER_MB = 0.45, 50.0, 150.0
GIVE_UP_AFTER_QUEUE_SECONDS = 2  # at the fixed rate: more than this many seconds' worth unanswered


class BenchError(RuntimeError):
    pass


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


# --- preconditions ----------------------------------------------------------------------------


def check_tools(reference: Path) -> None:
    missing = [tool for tool in ("wrk", "psql") if shutil.which(tool) is None]
    if missing:
        raise BenchError(
            f"missing on PATH: {', '.join(missing)} (Debian/Ubuntu: apt-get install -y wrk postgresql-client)"
        )
    for module in ("django", "gunicorn", "psycopg", "twilio"):
        if importlib.util.find_spec(module) is None:
            raise BenchError(
                f"{module} is not importable: run this with the project's environment, "
                "e.g. .venv/bin/python bench/ingest.py"
            )
    for name in ("refapp.py", "schema.sql"):
        if not (reference / name).exists():
            raise BenchError(f"the yardstick's {name} is not in {reference} (use --reference)")


def free_ports(count: int, ports: range) -> list[int]:
    found = []
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise BenchError(f"fewer than {count} free ports in {ports.start}-{ports.stop - 1}")


def psql(admin_url: str, database: str, sql: str) -> str:
    url = urllib.parse.urlsplit(admin_url)._replace(path=f"/{database}").geturl()
    done = subprocess.run(
        ["psql", url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True
    )
    if done.returncode:
        raise BenchError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


# --- the two servers ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    path: str  # the webhook's path
    database: str
    process: subprocess.Popen[bytes]
    log: collections.deque[str]
    probe: bytes  # a GET that any worker answers at once without touching the database

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def product_env(database_url: str, origin: str, data_dir: str, redis_url: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "PUBLIC_BASE_URL": origin,
        "DATA_DIR": data_dir,
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def gunicorn_command(application: str, port: int) -> list[str]:
    """The same plain gunicorn for both sides: -w 4 sync workers, gunicorn's defaults otherwise."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        application,
        "-w",
        str(WORKERS),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]


@contextlib.contextmanager
def serve(
    name: str,
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    port: int,
    path: str,
    database: str,
    probe_path: str,
    ready_status: int,
) -> Iterator[Server]:
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # The log goes to a pipe that is read at once, as a container runtime or journald would take it.
    # Not to a file: on a machine whose disk is busy, the kernel throttles writers of dirty pages and
    # the workers would stall on their own log lines, measuring the disk rather than the server.
    log: collections.deque[str] = collections.deque(maxlen=40)
    reader = threading.Thread(target=_read_log, args=(process, log), daemon=True)
    reader.start()
    probe = f"GET {probe_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    server = Server(name, port, path, database, process, log, probe)
    try:
        wait_ready(server, ready_status)
        yield server
    finally:
        stop_process(process)
        reader.join(timeout=5)


def _read_log(process: subprocess.Popen[bytes], log: collections.deque[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line.decode(errors="replace").rstrip())


def wait_ready(server: Server, ready_status: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name}: gunicorn exited:\n" + "\n".join(server.log))
        try:
            status = asyncio.run(http_status(server.port, server.probe))
            if status == ready_status:
                return
            raise BenchError(f"{server.name}: the probe answered {status}, not {ready_status}")
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{server.name}: gunicorn did not answer within 60 s")


async def http_status(port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        # Sync workers close every connection after answering; reading to EOF takes the whole body.
        await reader.read()
        return int(status_line.split()[1])
    finally:
        writer.close()


def drain(server: Server) -> None:
    """Wait until the server has worked through the requests queued before this one (gunicorn's
    accept queue is first in, first out), so one phase's backlog does not run into the next."""
    asyncio.run(asyncio.wait_for(http_status(server.port, server.probe), 600))


def server_cpu(server: Server) -> tuple[float, float]:
    """CPU seconds so far of the server's gunicorn workers and of the PostgreSQL backends serving its
    database."""
    master = str(server.process.pid)
    workers = cpu_seconds(lambda ppid, _: ppid == master)
    backends = cpu_seconds(
        lambda _, command: command.startswith("postgres: ") and f" {server.database} " in command
    )
    return workers, backends


def worker_peak_rss_mb(server: Server) -> list[float]:
    """Each gunicorn worker's peak resident set size (VmHWM), in MB, largest first."""
    peaks = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(server.process.pid) and "VmHWM" in fields:
            peaks.append(int(fields["VmHWM"].split()[0]) / 1024)
    return sorted(peaks, reverse=True)


# --- requests -----------------------------------------------------------------------------------


def message_sid(burst: int, thread: int, counter: int) -> str:
    """The MessageSid of `thread`'s `counter`-th request in `burst`, as bench/reference_post.lua
    builds the yardstick's: "SM" and 32 hex digits, like Twilio's, never the same twice in a run."""
    return f"SM{burst:08x}{thread:04x}{counter:020x}"


def sms_form(burst: int, n: int, rng: random.Random, threads: int) -> dict[str, str]:
    """The `n`-th request of a burst whose requests are dealt to `threads` wrk threads in turn
    (signed_sms.lua: thread n % threads sends it, as that thread's (n // threads)-th). The fields,
    their order and their values are those of the yardstick's post.lua."""
    return {
        "From": f"+1555{rng.randint(1, PHONES):07d}",
        "To": OUR_NUMBER,
        "Body": "hello there",
        "MessageSid": message_sid(burst, n % threads, n // threads),
        "AccountSid": "AC123",
        "NumMedia": "0",
    }


def signed_sms_bodies(
    count: int, auth_token: str, origin: str, seed: int, threads: int = WRK_THREADS
) -> list[tuple[str, str]]:
    """`count` (form body, signature) pairs for burst `seed`: each a new MessageSid, from a number
    drawn from 100,000, signed for `origin` as Twilio signs it."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(auth_token)
    rng = random.Random(seed)
    url = origin + SMS_PATH
    out = []
    for n in range(count):
        params = sms_form(seed, n, rng, threads)
        out.append((urllib.parse.urlencode(params), validator.compute_signature(url, params)))
    return out


def raw_request(path: str, body: str, headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{headers}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


def write_signed(path: Path, count: int, auth_token: str, origin: str, burst: int) -> Path:
    """One burst of ours for signed_sms.lua: a "signature<TAB>form body" line per request."""
    with path.open("w") as handle:
        for body, signature in signed_sms_bodies(count, auth_token, origin, burst):
            handle.write(f"{signature}\t{body}\n")
    return path


# --- open-loop fixed rate -----------------------------------------------------------------------


@dataclass
class RateResult:
    sent: int
    errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def answered(self) -> int:
        return self.sent - self.errors


async def fixed_rate(port: int, requests: list[bytes], rate: float, timeout: float = 10) -> RateResult:
    """Send request i at start + i/rate whatever happened to the earlier ones (open loop), and time
    each from that scheduled moment, so queueing in the server counts against it. A request still
    unanswered after `timeout` seconds counts as an error at that latency (the server may still
    store it), so an overloaded server cannot stretch the run without bound."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    latencies: list[float] = []
    errors = timeouts = skipped = outstanding = 0

    async def one(index: int, request: bytes) -> None:
        nonlocal errors, timeouts, skipped, outstanding
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        if outstanding > rate * GIVE_UP_AFTER_QUEUE_SECONDS:
            # Hopelessly overloaded: the verdict is in, and more would only queue up in the server.
            skipped += 1
            return
        outstanding += 1
        try:
            status = await asyncio.wait_for(http_status(port, request), timeout)
        except TimeoutError:
            status = 0
            timeouts += 1
        except OSError:
            status = 0
        outstanding -= 1
        latencies.append((loop.time() - scheduled) * 1000)
        if status != 200:
            errors += 1

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return RateResult(len(requests) - skipped, errors, timeouts, cuts[49], cuts[89], cuts[98], max(latencies))


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class Burst:
    """One wrk run against one server, and the CPU its server spent meanwhile."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str
    worker_cpu: float = 0.0  # seconds, all gunicorn workers together
    backend_cpu: float = 0.0  # seconds, the PostgreSQL backends of the server's database
    load: float = 0.0  # the machine's 1-minute load average as the burst began

    @property
    def answered(self) -> int:
        return self.requests - self.non_2xx

    def per_request_ms(self, seconds: float) -> float:
        return seconds / self.requests * 1000 if self.requests else 0.0


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> Burst:
    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if not match:
            raise BenchError(f"could not read {pattern!r} in wrk's output:\n{output}")
        return match.group(1)

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return Burst(
        requests=int(find(r"(\d+) requests in")),
        rps=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)")),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1) if errors else "",
    )


def run_wrk(server: Server, seconds: int, script: Path, script_env: dict[str, str]) -> Burst:
    """wrk -t2 -c16 against `server` for `seconds`, then wait for its queue to drain."""
    load = os.getloadavg()[0]
    before = server_cpu(server)
    done = subprocess.run(
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{WRK_CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            server.url,
        ],
        env={**os.environ, **script_env},
        capture_output=True,
        text=True,
    )
    after = server_cpu(server)
    if done.returncode:
        raise BenchError(f"wrk failed against {server.name}: {done.stderr or done.stdout}")
    drain(server)
    burst = parse_wrk(done.stdout)
    burst.worker_cpu, burst.backend_cpu = after[0] - before[0], after[1] - before[1]
    burst.load = load
    return burst


@dataclass
class Side:
    """What one server went through in a run."""

    label: str
    server: Server
    signed: dict[int, Path] = field(default_factory=dict)  # ours: burst -> pre-signed requests
    warm: Burst | None = None
    rounds: list[Burst] = field(default_factory=list)
    rate: RateResult | None = None
    peaks: list[float] = field(default_factory=list)
    stored: int = 0
    sessions: int = 0

    def burst(self, number: int, seconds: int) -> Burst:
        if self.signed:
            requests_file = self.signed[number]
            result = run_wrk(
                self.server,
                seconds,
                HERE / "signed_sms.lua",
                {
                    "BENCH_REQUESTS": str(requests_file),
                    "BENCH_PATH": self.server.path,
                    "BENCH_THREADS": str(WRK_THREADS),
                },
            )
            if result.requests > seconds * SIGNED_PER_SECOND:
                raise BenchError(
                    f"wrk sent {result.requests} requests but only {seconds * SIGNED_PER_SECOND} were "
                    "signed (signed_sms.lua then repeats MessageSids): raise SIGNED_PER_SECOND"
                )
            return result
        return run_wrk(self.server, seconds, HERE / "reference_post.lua", {"BENCH_BURST": str(number)})

    @property
    def answered(self) -> int:
        bursts = [self.warm, *self.rounds] if self.warm else self.rounds
        return sum(b.answered for b in bursts) + (self.rate.answered if self.rate else 0)

    @property
    def unanswered(self) -> int:
        """Sent but perhaps not counted: in flight when a wrk burst stopped, or timed out at the rate.
        The server may have stored those too."""
        bursts = len(self.rounds) + (1 if self.warm else 0)
        return WRK_CONNECTIONS * bursts + (self.rate.timeouts if self.rate else 0)

    @property
    def stored_once(self) -> bool:
        # wrk stops counting with up to one request per connection in flight; the server may finish
        # and store those, so a few more than were counted is correct, fewer is not.
        return self.answered <= self.stored <= self.answered + self.unanswered

    @property
    def non_2xx(self) -> int:
        bursts = [self.warm, *self.rounds] if self.warm else self.rounds
        return sum(b.non_2xx for b in bursts) + (self.rate.errors if self.rate else 0)

    @property
    def median(self) -> float:
        return statistics.median(b.rps for b in self.rounds)


# --- the run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating (default 3)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each round (default 8)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up burst per side, seconds (default 3)")
    parser.add_argument(
        "--rate", type=float, default=200, help="fixed request rate for latency (default 200/s)"
    )
    parser.add_argument(
        "--rate-seconds", type=int, default=10, help="length of each fixed-rate phase (default 10)"
    )
    parser.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--database",
        default="bench_ingest",
        help="ours; the yardstick's is <database>_ref; both dropped and recreated (default bench_ingest)",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""), help="default: $REDIS_URL")
    parser.add_argument("--reference", type=Path, default=Path("/work/shared/bench/reference"))
    parser.add_argument(
        "--ports", default="18100-18199", help="loopback ports to serve on (default 18100-18199)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1 or args.warmup < 1 or args.rate_seconds < 1:
        parser.error("--rounds, --seconds, --warmup and --rate-seconds must be at least 1")
    first, last = (int(p) for p in args.ports.split("-"))
    try:
        return run(args, range(first, last + 1))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("bench: the run failed", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, ports: range) -> int:
    check_tools(args.reference)
    our_port, ref_port = free_ports(2, ports)
    origin = f"http://127.0.0.1:{our_port}"
    ref_database = f"{args.database}_ref"
    for database in (args.database, ref_database):
        psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{database}"')
        psql(args.admin_url, "postgres", f'CREATE DATABASE "{database}"')
    try:
        return measure(args, origin, our_port, ref_port, ref_database)
    finally:
        for database in (args.database, ref_database):
            with contextlib.suppress(BenchError):
                psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def measure(args: argparse.Namespace, origin: str, our_port: int, ref_port: int, ref_database: str) -> int:
    database_url = urllib.parse.urlsplit(args.admin_url)._replace(path=f"/{args.database}").geturl()
    rate_burst = args.rounds + 1  # burst 0 is the warm-up, 1..rounds the rounds
    rate_count = int(args.rate * args.rate_seconds)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, contextlib.ExitStack() as stack:
        data_dir = Path(tmp)
        env = product_env(database_url, origin, str(data_dir / "data"), args.redis_url)
        token = env["TWILIO_AUTH_TOKEN"]
        say(f"signing our requests ({SIGNED_PER_SECOND} per second of each burst)")
        signed = {}
        for number in range(args.rounds + 1):
            seconds = args.seconds if number else args.warmup
            signed[number] = write_signed(
                data_dir / f"burst-{number}.tsv", SIGNED_PER_SECOND * seconds, token, origin, number
            )
        our_rate = [
            raw_request(SMS_PATH, body, f"X-Twilio-Signature: {signature}\r\n")
            for body, signature in signed_sms_bodies(rate_count, token, origin, rate_burst, threads=1)
        ]
        rng = random.Random(rate_burst)
        their_rate = [
            raw_request(REF_PATH, urllib.parse.urlencode(sms_form(rate_burst, n, rng, 1)))
            for n in range(rate_count)
        ]

        say(f"database {args.database}: migrating")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
        say(f"database {ref_database}: the yardstick's schema.sql")
        psql(args.admin_url, ref_database, (args.reference / "schema.sql").read_text())

        say(
            f"serving ours (config.wsgi:application) on {origin} and the yardstick (refapp) on "
            f"port {ref_port}, gunicorn -w {WORKERS} each; Redis: {args.redis_url or 'none'}"
        )
        ours = Side(
            "ours",
            stack.enter_context(
                serve(
                    "ours",
                    gunicorn_command("config.wsgi:application", our_port),
                    ROOT,
                    env,
                    our_port,
                    SMS_PATH,
                    args.database,
                    SMS_PATH,
                    405,
                )
            ),
            signed=signed,
        )
        ref_env = {"PATH": os.environ.get("PATH", ""), "PGDATABASE": ref_database}
        theirs = Side(
            "yardstick",
            stack.enter_context(
                serve(
                    "yardstick",
                    gunicorn_command("refapp:application", ref_port),
                    args.reference,
                    ref_env,
                    ref_port,
                    REF_PATH,
                    ref_database,
                    "/",
                    404,
                )
            ),
        )
        sides = (ours, theirs)

        for side in sides:
            say(f"warm-up: {side.label}, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} for {args.warmup}s")
            side.warm = side.burst(0, args.warmup)
        for number in range(1, args.rounds + 1):
            for side in sides:
                say(f"round {number}/{args.rounds}: {side.label}, {args.seconds}s")
                side.rounds.append(side.burst(number, args.seconds))
                print(f"    {round_line(side.rounds[-1])}", flush=True)
        for side, requests in ((ours, our_rate), (theirs, their_rate)):
            say(f"{side.label}: {args.rate:g} requests/s for {args.rate_seconds}s (open loop)")
            side.rate = asyncio.run(fixed_rate(side.server.port, requests, args.rate))
            drain(side.server)
        for side in sides:
            side.peaks = worker_peak_rss_mb(side.server)
        log_tail = "\n".join(ours.server.log)
        ref_log_tail = "\n".join(theirs.server.log)
    # Both servers are stopped: whatever they had accepted is stored by now.
    inbound = "SELECT count(*) FROM sessions_app_message WHERE direction = 'inbound'"
    ours.stored = int(psql(args.admin_url, args.database, inbound))
    ours.sessions = int(psql(args.admin_url, args.database, "SELECT count(*) FROM sessions_app_session"))
    theirs.stored = int(psql(args.admin_url, ref_database, "SELECT count(*) FROM msg"))
    theirs.sessions = int(psql(args.admin_url, ref_database, "SELECT count(*) FROM sess"))
    return report(args, ours, theirs, rate_count, log_tail, ref_log_tail)


def round_line(burst: Burst) -> str:
    return (
        f"{burst.rps:7.1f} req/s  p50 {burst.p50_ms:5.1f} ms  p99 {burst.p99_ms:6.1f} ms  "
        f"CPU/request {burst.per_request_ms(burst.worker_cpu):4.2f} ms workers + "
        f"{burst.per_request_ms(burst.backend_cpu):4.2f} ms PostgreSQL  (load {burst.load:.1f})"
    )


def report(
    args: argparse.Namespace, ours: Side, theirs: Side, rate_count: int, log_tail: str, ref_log_tail: str
) -> int:
    print()
    print(
        f"throughput: gunicorn -w {WORKERS} each, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}, "
        f"{args.seconds}s rounds alternating ours/yardstick, both warmed {args.warmup}s first"
    )
    for number, (mine, ref) in enumerate(zip(ours.rounds, theirs.rounds, strict=True), start=1):
        print(f"  round {number}  ours      {round_line(mine)}")
        print(f"  round {number}  yardstick {round_line(ref)}   (ours/yardstick {mine.rps / ref.rps:.2f})")
    ratio = ours.median / theirs.median
    print(
        f"  median    ours {ours.median:7.1f} req/s, yardstick {theirs.median:7.1f} req/s: "
        f"ratio of the medians {ratio:.3f}"
    )
    for side in (ours, theirs):
        rate = side.rate
        assert rate is not None
        print(f"{side.label}")
        print(
            f"  at {args.rate:g} req/s      p50 {rate.p50_ms:.1f} ms, p90 {rate.p90_ms:.1f} ms, "
            f"p99 {rate.p99_ms:.1f} ms, max {rate.max_ms:.1f} ms ({rate.sent} requests, {rate.errors} not "
            f"200, {rate.timeouts} timed out{'; gave up, overloaded' if rate.sent < rate_count else ''})"
        )
        print(
            f"  worker peak RSS   {', '.join(f'{mb:.1f}' for mb in side.peaks)} MB (VmHWM, "
            f"{len(side.peaks)} workers)"
        )
        print(
            f"  stored            {side.stored} messages, {side.answered} answered 200 (up to "
            f"{side.unanswered} more sent but not counted), {side.sessions} sessions; "
            f"{side.non_2xx} not 200"
        )
    socket_errors = [b.socket_errors for b in (ours.warm, *ours.rounds) if b and b.socket_errors]

    method = [
        (
            "yardstick: no errors, and every 200 stored once (no MessageSid repeated)",
            theirs.non_2xx == 0 and theirs.stored_once,
            f"{theirs.non_2xx} not 200, {theirs.stored} stored for {theirs.answered} answered",
        ),
    ]
    targets = [
        (
            f"throughput: ratio of the medians >= {TARGET_RATIO:g}",
            ratio >= TARGET_RATIO,
            f"{ratio:.3f} ({ours.median:.1f} / {theirs.median:.1f} req/s)",
        ),
        (
            f"p99 at {args.rate:g} req/s <= {TARGET_P99_MS:g} ms",
            ours.rate is not None and ours.rate.p99_ms <= TARGET_P99_MS,
            f"{ours.rate.p99_ms if ours.rate else 0:.1f} ms",
        ),
        (
            f"peak RSS per worker <= {TARGET_WORKER_MB:g} MB",
            bool(ours.peaks) and ours.peaks[0] <= TARGET_WORKER_MB,
            f"largest {ours.peaks[0] if ours.peaks else 0:.1f} MB",
        ),
        (
            "exactly once: every request answered 200 stored once, no errors",
            ours.stored_once and ours.non_2xx == 0,
            f"{ours.stored} stored for {ours.answered} answered (up to {ours.unanswered} more sent), "
            f"{ours.non_2xx} not 200; socket errors: {'; '.join(socket_errors) or 'none'}",
        ),
    ]
    print()
    for name, ok, value in method:
        print(f"  [{'ok' if ok else 'FAILED'}] {name}: {value}")
    for name, ok, value in targets:
        print(f"  [{'ok' if ok else 'MISSED'}] {name}: {value}")
    if ours.non_2xx:
        print(f"\nlast lines of our server's log:\n{log_tail}")
    if not all(ok for _, ok, _ in method):
        print(f"\nlast lines of the yardstick's log:\n{ref_log_tail}")
        print("bench: the yardstick's figures are not valid; no verdict", file=sys.stderr)
        return 2
    return 0 if all(ok for _, ok, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
