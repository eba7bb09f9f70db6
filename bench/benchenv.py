"""What every benchmark gives the product: production mode, with bench-only values that are not secrets."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

# Bench-only, not a secret: the seeding scripts and the benchmarks that read their rows must agree
# on the key that encrypts session metadata.
BENCH_FIELD_KEY = "YmVuY2gtb25seS1rZXktbm90LWEtc2VjcmV0LTAwMDA="


def empty_metadata_token() -> str:
    """`{}` as an encrypted Session.metadata column holds it (see sessions_app/privacy/crypto.py)."""
    return Fernet(BENCH_FIELD_KEY.encode()).encrypt(b"{}").decode("ascii")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of one process (0 when it is gone or not on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes_cpu(match: Callable[[str, str], bool]) -> dict[int, float]:
    """User + system CPU seconds of each process for which match(parent pid, command line) holds."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if match(fields[1], command):
            # utime, stime in clock ticks
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def cpu_seconds(match: Callable[[str, str], bool]) -> float:
    """User + system CPU time of the processes for which match(parent pid, command line) holds."""
    return sum(processes_cpu(match).values())


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Ask a server to stop, and kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
