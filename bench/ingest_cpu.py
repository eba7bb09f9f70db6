"""CPU per inbound SMS, ours against the yardstick, with both apps called in-process.

    .venv/bin/python bench/ingest_cpu.py --redis-url redis://127.0.0.1:6379/10

`bench/ingest.py` measures throughput through gunicorn and wrk, which swings by a third between
identical runs on a shared machine. This script takes the server and the load generator out and
counts CPU instead: each app's WSGI callable is called with ready-made requests (ours signed, as
Twilio would), and each run reports the Python process's CPU (`time.process_time`, its threads
included) and its PostgreSQL backend's (`/proc`) per request. First `--pairs` alternating runs of
one process each, on emptied tables; then `--processes` of each app at once, as under
`gunicorn -w 4` on two cores, alternating too; the ratio of the two throughputs there is what the
ingest benchmark's ratio tends to. Databases `bench_cpu` and `bench_cpu_ref` are dropped and created again.
"""

from __future__ import annotations

import argparse
import collections
import io
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OURS_DB, REF_DB = "bench_cpu", "bench_cpu_ref"
ORIGIN = "http://127.0.0.1:18199"  # never served: only what the signatures are computed for
WARM_UP = 200


def environ(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "18199",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:18199",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **headers,
    }


def call(application: Callable[..., Any], env: dict[str, Any]) -> None:
    statuses: list[str] = []
    response = application(env, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(response)
    getattr(response, "close", lambda: None)()
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"{env['PATH_INFO']} answered {statuses[0]}")


def measure(
    application: Callable[..., Any], requests: Iterable[dict[str, Any]], count: int
) -> dict[str, float]:
    from benchenv import process_cpu_seconds
    from django.db import connection

    requests = iter(requests)
    for _ in range(WARM_UP):
        call(application, next(requests))
    pid = connection.connection.info.backend_pid
    measured = [(application, next(requests)) for _ in range(count)]
    backend, python, wall = process_cpu_seconds(pid), time.process_time(), time.perf_counter()
    # Through itertools.starmap, whose C function callgrind's --toggle-collect names (--instructions):
    # only the measured calls are counted, not the start-up or the warm-up.
    collections.deque(itertools.starmap(call, measured), maxlen=0)
    return {
        "python_ms": (time.process_time() - python) / count * 1000,
        "postgres_ms": (process_cpu_seconds(pid) - backend) / count * 1000,
        "wall_ms": (time.perf_counter() - wall) / count * 1000,
    }


def child_ours(count: int, seed: int, token: str) -> dict[str, float]:
    from ingest import SMS_PATH, signed_sms_bodies  # bench/ingest.py: the same requests as wrk's

    from config.wsgi import application

    requests = (
        environ(SMS_PATH, body.encode(), {"HTTP_X_TWILIO_SIGNATURE": signature})
        for body, signature in signed_sms_bodies(count + WARM_UP, token, ORIGIN, seed)
    )
    return measure(application, requests, count)


def child_reference(count: int, seed: int, reference: Path) -> dict[str, float]:
    sys.path.insert(0, str(reference))
    import refapp  # type: ignore[import-not-found]

    rng = random.Random(seed)

    def requests() -> Iterable[dict[str, Any]]:
        for n in range(count + WARM_UP):  # as the yardstick's post.lua builds them
            body = urllib.parse.urlencode(
                {
                    "From": f"+1555{rng.randint(1, 100_000):07d}",
                    "To": "+15005550006",
                    "Body": "hello there",
                    "MessageSid": f"SM{seed:08x}{n:024x}",
                    "AccountSid": "AC123",
                    "NumMedia": "0",
                }
            )
            yield environ("/sms", body.encode(), {})

    return measure(refapp.application, requests(), count)


Started = tuple[subprocess.Popen[str], Path]


def start(which: str, args: argparse.Namespace, env: dict[str, str], seed: int, logs: Path) -> Started:
    command = [sys.executable, __file__, "--child", which, "--requests", str(args.requests)]
    command += ["--seed", str(seed), "--reference", str(args.reference)]
    # Its log (a line per message) goes to a file, as a served process's goes to a pipe someone reads.
    log = logs / f"{which}-{seed}.log"
    with log.open("w") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=handle, text=True
        )
    return process, log


def instructions(which: str, args: argparse.Namespace, env: dict[str, str], logs: Path) -> int:
    """Instructions the measured calls of one `which` child executed (callgrind's count)."""
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind: apt-get install -y valgrind")
    command = [sys.executable, __file__, "--child", which, "--requests", str(args.requests)]
    command += ["--seed", "7", "--reference", str(args.reference)]
    out = logs / f"{which}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next"]
    valgrind.append(f"--callgrind-out-file={out}")
    done = subprocess.run(valgrind + command, cwd=ROOT, env=env, capture_output=True, text=True)
    found = [line for line in done.stderr.splitlines() if "Collected :" in line]
    if done.returncode or not found:
        sys.stderr.write(done.stderr[-2000:])
        raise SystemExit(f"the {which} child failed under valgrind (exit {done.returncode})")
    return int(found[-1].split(":")[-1].strip())


def results(started: list[Started]) -> list[dict[str, float]]:
    out = []
    for process, log in started:
        stdout, _ = process.communicate()
        if process.returncode:
            sys.stderr.write("".join(log.read_text().splitlines(keepends=True)[-20:]))
            raise SystemExit(f"a measuring process failed (exit {process.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per process")
    parser.add_argument("--pairs", type=int, default=3, help="alternating one-process runs of each app")
    parser.add_argument("--processes", type=int, default=4, help="processes of each app at once")
    parser.add_argument("--redis-url", default="", help="REDIS_URL for our app, as in production")
    parser.add_argument("--admin-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "bench" / "reference")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions instead (valgrind's callgrind, one process of each app, --requests "
        "measured calls; repeatable on a busy machine, about a minute per 100 requests)",
    )
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--db-prefix", default="", help="prefix of the two databases' names (runs beside other runs)"
    )
    parser.add_argument(
        "--event-endpoints",
        type=int,
        default=0,
        help="enabled event endpoints (all events) to register first: the outbox's cost "
        "(docs/event-webhooks.md)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))

    if args.child == "ours":
        print(json.dumps(child_ours(args.requests, args.seed, os.environ["TWILIO_AUTH_TOKEN"])))
        return 0
    if args.child == "reference":
        print(json.dumps(child_reference(args.requests, args.seed, args.reference)))
        return 0

    from ingest import product_env, psql

    global OURS_DB, REF_DB
    OURS_DB, REF_DB = args.db_prefix + OURS_DB, args.db_prefix + REF_DB

    for database in (OURS_DB, REF_DB):
        psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{database}"')
        psql(args.admin_url, "postgres", f'CREATE DATABASE "{database}"')
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-cpu-"))
    ours_env = {
        **os.environ,
        **product_env(
            urllib.parse.urlsplit(args.admin_url)._replace(path=f"/{OURS_DB}").geturl(),
            ORIGIN,
            str(data_dir),
            args.redis_url,
        ),
        "LOG_LEVEL": "INFO",  # as served: one log line per message
    }
    if not args.redis_url:
        ours_env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=ours_env, check=True
    )
    if args.redis_url:
        # A reply drain's promise for the run, as a running drain keeps it under load: the commits
        # then queue nothing (sessions_app/delivery/reply_drain.py). Left to run out, how many drains
        # the measured calls queued would depend on how fast the machine was, callgrind's slowness
        # included (at full speed a web process reads the promise a few times a second).
        promise = (
            "import time\n"
            "from django.core.cache import cache\n"
            "from sessions_app.delivery.reply_drain import slot_key\n"
            "cache.set(slot_key(0), time.time() + 3600, timeout=3600)\n"
        )
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", promise], cwd=ROOT, env=ours_env, check=True
        )
    if args.event_endpoints:
        # Never answered (nothing listens there, and no worker runs): only the outbox's writes count.
        # Each endpoint's kick flag is set for the run, as its running delivery task keeps it under
        # load: a commit reads the flags and queues nothing. Left to expire (5 s), how many tasks
        # the run queued would depend on how fast the machine was, callgrind's slowness included.
        create = (
            "from django.core.cache import cache\n"
            "from sessions_app.events.record import kick_key\n"
            "from sessions_app.models import EventEndpoint\n"
            f"for number in range({args.event_endpoints}):\n"
            "    url = f'http://127.0.0.1:9/{number}'\n"
            "    endpoint = EventEndpoint.objects.create(url=url, event_types=['*'])\n"
            "    cache.set(kick_key(endpoint.pk), 1, timeout=3600)\n"
        )
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", create], cwd=ROOT, env=ours_env, check=True
        )
    ref_env = {**os.environ, "PGDATABASE": REF_DB}
    psql(args.admin_url, REF_DB, (args.reference / "schema.sql").read_text())

    def empty() -> None:
        psql(
            args.admin_url,
            OURS_DB,
            "TRUNCATE sessions_app_message, sessions_app_session, sessions_app_contact, "
            "sessions_app_event CASCADE"
            if args.event_endpoints
            else "TRUNCATE sessions_app_message, sessions_app_session, sessions_app_contact CASCADE",
        )
        psql(args.admin_url, REF_DB, "TRUNCATE msg, sess")

    def row(name: str, runs: list[dict[str, float]]) -> str:
        def span(key: str) -> str:
            values = [run[key] for run in runs]
            return f"{min(values):.2f} to {max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

        return f"  {name:<30} Python {span('python_ms')} ms, PostgreSQL {span('postgres_ms')} ms"

    if args.instructions:
        counts = {}
        for which, env in (("ours", ours_env), ("reference", ref_env)):
            empty()
            counts[which] = instructions(which, args, env, data_dir) / args.requests / 1e6
        print(f"instructions per inbound SMS in the Python process, {args.requests} calls after {WARM_UP}:")
        print(f"  ours       {counts['ours']:.3f} M")
        print(f"  yardstick  {counts['reference']:.3f} M")
        print(f"  ratio yardstick / ours: {counts['reference'] / counts['ours']:.3f}")
        return 0

    ours: list[dict[str, float]] = []
    ref: list[dict[str, float]] = []
    for pair in range(args.pairs):
        empty()
        ours += results([start("ours", args, ours_env, 100 + pair, data_dir)])
        empty()
        ref += results([start("reference", args, ref_env, 100 + pair, data_dir)])
    # Alternated too: the machine's speed drifts over minutes, and both apps should see the same drift.
    ours_many: list[list[dict[str, float]]] = []
    ref_many: list[list[dict[str, float]]] = []
    for pair in range(args.pairs):
        seeds = range(1000 * (pair + 2), 1000 * (pair + 2) + args.processes)
        empty()
        ours_many.append(results([start("ours", args, ours_env, seed, data_dir) for seed in seeds]))
        empty()
        ref_many.append(results([start("reference", args, ref_env, seed, data_dir) for seed in seeds]))
    for database in (OURS_DB, REF_DB):
        psql(args.admin_url, "postgres", f'DROP DATABASE IF EXISTS "{database}"')
    shutil.rmtree(data_dir, ignore_errors=True)

    def total(runs: list[dict[str, float]]) -> float:
        return statistics.median(run["python_ms"] + run["postgres_ms"] for run in runs)

    def rate(runs: list[dict[str, float]]) -> float:
        return sum(1000 / run["wall_ms"] for run in runs)

    print(f"CPU per inbound SMS, {args.requests} requests per process (after {WARM_UP} to warm up)")
    print(f"one process at a time, {args.pairs} alternating pairs:")
    print(row("ours", ours))
    print(row("yardstick", ref))
    print(f"  CPU ratio yardstick / ours (medians): {total(ref) / total(ours):.2f}")
    print(f"{args.processes} processes of each at once, {args.pairs} alternating rounds:")
    for name, rounds in (("ours", ours_many), ("yardstick", ref_many)):
        rates = ", ".join(f"{rate(runs):,.0f}" for runs in rounds)
        print(row(name, [run for runs in rounds for run in runs]) + f"; requests/s in all: {rates}")
    ratios = [rate(o) / rate(r) for o, r in zip(ours_many, ref_many, strict=True)]
    best = max(rate(runs) for runs in ours_many) / max(rate(runs) for runs in ref_many)
    print(
        f"  throughput ratio ours / yardstick: {', '.join(f'{r:.2f}' for r in ratios)} by round, "
        f"{best:.2f} best against best"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
