#!/usr/bin/env python3
"""Install and run the product, or its tests, with nothing but Python 3.11+.

    python3 run.py serve          # install into .venv, migrate, serve on http://127.0.0.1:8000
    python3 run.py test [ARGS]    # install into .venv (with test tools), run the whole test suite
    python3 run.py manage ARGS    # any manage.py command inside the environment

Standard library only: this file runs before anything is installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_environment(extras: str) -> None:
    """Create .venv and install the project (and `extras`) unless that was already done."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        say(f"creating a virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    say("installing the project and its dependencies (first run only)")
    target = f".[{extras}]" if extras else "."
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target],
        cwd=ROOT,
        check=True,
    )
    stamp.write_text(digest)


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, check=True, env=env)


def local_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")  # embedded defaults: SQLite, generated local secrets
    return env


def serve(args: list[str]) -> int:
    ensure_environment("")
    env = local_env()
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", "-v0", env=env)
    commands = {
        "web": [
            str(PYTHON),
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            host,
            "--port",
            port,
            "--no-access-log",
        ],  # access lines would carry socket tokens from the query string
    }
    commands["worker"] = worker_command(env)
    say(f"serving on http://{host}:{port}/ (staff login: python3 run.py manage createsuperuser)")
    processes = {name: subprocess.Popen(command, cwd=ROOT, env=env) for name, command in commands.items()}

    def stop(*_: object) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        # A worker with embedded beat can hang in its warm shutdown; don't leave it behind.
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            for name, process in processes.items():
                code = process.poll()
                if code is not None:
                    say(f"{name} exited with {code}; stopping the rest")
                    stop()
                    return code
            with contextlib.suppress(subprocess.TimeoutExpired):
                next(iter(processes.values())).wait(timeout=1)
    except KeyboardInterrupt:
        stop()
        return 0


def browser_missing() -> str:
    """Why the browser tests (tests/ui/test_browser.py) cannot run here, or "" when they can."""
    chromium = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
    if Path(chromium).exists():
        return ""
    return f"no Chromium at {chromium} (apt-get install -y chromium, or set CHROMIUM_PATH)"


def worker_command(env: dict[str, str]) -> list[str]:
    """The task worker with the beat scheduler embedded; without REDIS_URL its broker is a folder
    in the data directory (see docs/tasks.md), so the whole product runs with nothing else."""
    data = Path(env.get("DATA_DIR") or ROOT / "data")
    data.mkdir(parents=True, exist_ok=True)
    return [
        str(PYTHON),
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--beat",
        "--schedule",
        str(data / "celerybeat-schedule"),
        "--concurrency",
        env.get("WORKER_CONCURRENCY", "2"),
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


def test(args: list[str]) -> int:
    ensure_environment("dev")
    db = os.environ.get("DATABASE_URL") or "SQLite (set DATABASE_URL=postgres://... for PostgreSQL)"
    say(f"running the test suite on {db}")
    missing = browser_missing()
    if missing:
        say(f"browser tests will be SKIPPED: {missing}")
    code = subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT).returncode
    if missing:
        say(f"browser tests were SKIPPED: {missing}")
    return code


def manage_command(args: list[str]) -> int:
    ensure_environment("")
    return subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, env=local_env()).returncode


COMMANDS = {"serve": serve, "test": test, "manage": manage_command}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
