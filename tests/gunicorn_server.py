"""The real product under gunicorn with several worker processes, pointed at the test database.

Tests that must see what happens across processes (the per-pair lock) start it; the rows they read
back were committed by the workers, so those tests use the transactional database.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from tests.servers import free_port, stop_process, suite_database_url

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def gunicorn(
    workers: int = 4, env_overrides: dict[str, str] | None = None, threads: int = 1
) -> Iterator[str]:
    """Serve `config.wsgi:application` with `workers` worker processes; yields the origin.

    Sync workers (the README's production layout) by default; with `threads` > 1, gunicorn's
    threaded workers, each thread handling one request at a time on its own database connection.
    Started from the project's root, as the README starts it."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="gunicorn-test-") as data_dir:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": suite_database_url(),
            "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": settings.TWILIO_AUTH_TOKEN,
            "PUBLIC_BASE_URL": origin,
            "DATA_DIR": data_dir,
            "LOG_LEVEL": "WARNING",
            "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        }
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
        env.update(env_overrides or {})
        log_path = Path(data_dir) / "gunicorn.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi:application",
                    "--workers",
                    str(workers),
                    *(
                        ["--worker-class", "gthread", "--threads", str(threads)]
                        if threads > 1
                        else ["--worker-class", "sync"]
                    ),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--backlog",
                    "256",
                    "--timeout",
                    "60",
                ],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_until_ready(process, port, log_path)
                yield origin
            finally:
                stop_process(process, timeout=15)


def _wait_until_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/webhooks/twilio/sms/")
            if conn.getresponse().status == 405:  # Django answers: a worker is up
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not become ready on port {port}:\n{log_path.read_text()}")
