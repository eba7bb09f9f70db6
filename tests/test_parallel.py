"""The suite's parallel workers (tests/parallel.py, run.py's PARALLEL) share no Redis db, port or
database name, and a run without xdist is left as it was."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

import run
from tests import parallel


def as_worker(monkeypatch: pytest.MonkeyPatch, worker: str, count: int) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))


def test_each_worker_gets_redis_db_base_plus_its_index(monkeypatch):
    as_worker(monkeypatch, "gw1", 2)
    assert parallel.worker_redis_url("redis://127.0.0.1:6379/8") == "redis://127.0.0.1:6379/9"
    assert parallel.worker_redis_url("redis://:pw@redis.example:6380") == "redis://:pw@redis.example:6380/1"


def test_a_worker_whose_db_would_be_past_15_stops_the_run_saying_why(monkeypatch):
    as_worker(monkeypatch, "gw1", 2)
    with pytest.raises(RuntimeError, match="needs Redis db 16"):
        parallel.worker_redis_url("redis://127.0.0.1:6379/15")
    with pytest.raises(RuntimeError, match="redis://host:port/db"):
        parallel.worker_redis_url("unix:///run/redis.sock?db=3")


def test_workers_get_disjoint_slices_of_a_port_range_and_suffixed_database_names(monkeypatch):
    slices = []
    for index in range(3):
        as_worker(monkeypatch, f"gw{index}", 3)
        slices.append(set(parallel.worker_ports(range(18100, 18200))))
        assert parallel.worker_database("embedded_beat") == f"embedded_beat_gw{index}"
    assert all(len(ports) == 33 for ports in slices)
    assert not (slices[0] & slices[1]) and not (slices[1] & slices[2]) and not (slices[0] & slices[2])


def test_outside_xdist_nothing_changes(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert parallel.worker_redis_url("redis://127.0.0.1:6379/8") == "redis://127.0.0.1:6379/8"
    assert parallel.worker_ports(range(18100, 18200)) == range(18100, 18200)
    assert parallel.worker_database("embedded_beat") == "embedded_beat"


def test_run_py_test_runs_two_workers_unless_told_otherwise():
    assert run.pytest_args(["-q"]) == [*run.PARALLEL, "-q"]
    assert run.pytest_args(["-n", "0", "tests/test_health.py"])[-3:] == ["-n", "0", "tests/test_health.py"]
    assert run.pytest_args(["-p", "no:xdist", "-q"]) == ["-p", "no:xdist", "-q"]
    assert "-n" in run.PARALLEL and run.PARALLEL[run.PARALLEL.index("-n") + 1] == "2"


def test_after_the_test_install_serve_and_manage_install_nothing(tmp_path, monkeypatch):
    """Two launchers the parallel tests start at once would otherwise race in one `pip install`."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 3\n")  # a pip install through it would fail
    python.chmod(0o755)
    digest = hashlib.sha256((run.ROOT / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".installed-dev").write_text(digest)
    monkeypatch.setattr(run, "VENV", venv)
    monkeypatch.setattr(run, "PYTHON", python)
    run.ensure_environment("")  # the base install is part of the dev one
    (venv / ".installed-dev").write_text("an older pyproject.toml")
    with pytest.raises(subprocess.CalledProcessError):
        run.ensure_environment("")
