"""Benchmark the streamed export: rows a second and the worker's memory growth over every session.

    .venv/bin/python bench/seed.py --database bench_reports        # 1,000,000 sessions, 5,000,000 messages
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_reports .venv/bin/python bench/export.py

Streams GET /api/v1/sessions/export/?format=csv (every session) in-process through Django's full
stack with an API key, as a WSGI server would: the response's pieces are consumed and dropped. It
reports the rows, the elapsed time, the rate, and the growth of the process's peak resident memory
(ru_maxrss) from just before the request to the end. Targets: 20,000 rows/s or more, under 50 MB.
`--transcripts` measures JSON lines with every session's messages instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from benchenv import BENCH_FIELD_KEY

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_RATE = 20_000
TARGET_GROWTH_MB = 50


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transcripts", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("FIELD_ENCRYPTION_KEYS", BENCH_FIELD_KEY)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.pop("REDIS_URL", None)
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    from django.test import Client

    from sessions_app.api.keys import issue_key

    key = issue_key("bench-export")[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    url = "/api/v1/sessions/export/?" + (
        "format=jsonl&transcripts=true" if args.transcripts else "format=csv"
    )
    client.get(url + "&created_after=2100-01-01T00:00:00Z")  # warm: imports, first queries
    before = peak_mb()
    started = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200
    lines = 0
    size = 0
    for piece in response.streaming_content:
        lines += piece.count(b"\n")
        size += len(piece)
    response.close()
    elapsed = time.perf_counter() - started
    rows = lines - (0 if args.transcripts else 1)
    growth = peak_mb() - before
    rate = rows / elapsed
    print(
        f"{rows:,} rows ({size / 1e6:,.0f} MB) in {elapsed:.1f}s: {rate:,.0f} rows/s; "
        f"peak memory +{growth:.1f} MB"
    )
    ok = rate >= TARGET_RATE and growth < TARGET_GROWTH_MB
    print(f"{'meets' if ok else 'misses'} the targets ({TARGET_RATE:,} rows/s, < {TARGET_GROWTH_MB} MB)")


if __name__ == "__main__":
    main()
