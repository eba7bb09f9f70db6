"""One process per gunicorn server publishes, for all its web workers, what they hand to Redis.

Every stored message owes two publishes: its broadcast to the sockets (`realtime/layers.py`) and,
when it expects an answer, a reply task for the Celery workers (`replies.py`). Each web worker used
to publish its own from a background thread (`batched_enqueue.py`). Under load that cost about a
sixth of a worker's CPU: small batches (one worker's share of the traffic), a Redis round trip and
kombu's per-publish set-up for each, and the thread contending for the worker's GIL. Here the
workers write each item to a pipe that the gunicorn master opened before forking them (one
`write`, microseconds), and this process, started by the master beside them, gathers the items of
every worker into the same batched queues and publishes those: batches several times larger, and
the workers' threads idle. See docs/publish-relay.md for the measurements and what was rejected.

The pipe carries one line per `add_all`: JSON `[queue name, items]`. Writes of at most PIPE_BUF
bytes are atomic, so lines from different workers never interleave; the write end is non-blocking,
so a relay that falls behind (full pipe) or is gone (broken pipe) never holds a webhook up. An item
that cannot go through the pipe (too large, not JSON, relay full or gone) is published by the
worker's own thread, as before: the relay is an optimisation, never a point of failure. Nothing is
lost that was not already at risk: reply work is owed in the database until a worker claims it
(`recover_owed_work` re-queues it), and broadcasts are best effort.

Gunicorn starts it from `gunicorn.conf.py` (`on_starting`) and stops it on exit; other servers
(runserver, uvicorn, Celery) never set the variable and publish from their own threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import time
from typing import Any

import orjson

log = logging.getLogger("sessions_app.publish_relay")  # also when run as __main__

# The pipe's write end as "<fd>:<inode>": set by the master, inherited by the workers it forks.
RELAY_FD_VARIABLE = "SESSIONS_PUBLISH_RELAY_FD"
# POSIX guarantees atomic pipe writes up to PIPE_BUF (512 bytes at least; 4,096 on Linux).
LINE_LIMIT = getattr(select, "PIPE_BUF", 512)
# Room for bursts while the relay is descheduled (the default pipe holds 64 KiB).
PIPE_SIZE = 1 << 20
# After a read, lines gather this long before the next: a read (and a wake-up of this process) per
# few milliseconds instead of per line, for a few milliseconds on events that the queues then hold for
# their own linger anyway.
READ_GATHER = 0.005
# How long a stopping relay waits for its queues to reach Redis.
FLUSH_TIMEOUT = 5.0


# --- the web worker's side -------------------------------------------------------------------------

# (pid, the variable's value, its write fd or None): read once per process and value.
_writer: tuple[int, str, int | None] | None = None


def _write_fd() -> int | None:
    global _writer
    pid, value = os.getpid(), os.environ.get(RELAY_FD_VARIABLE, "")
    if _writer is None or _writer[0] != pid or _writer[1] != value:
        _writer = (pid, value, _inherited_write_fd(value))
    return _writer[2]


def relay_variable(write_fd: int) -> str:
    return f"{write_fd}:{os.fstat(write_fd).st_ino}"


def _inherited_write_fd(value: str) -> int | None:
    fd_text, _, inode_text = value.partition(":")
    if not (fd_text.isdigit() and inode_text.isdigit()):
        return None
    fd = int(fd_text)
    try:
        # A program the master did not fork (an exec'd one keeps the variable but not the pipe) may
        # hold another file under that number: only the very pipe, open for writing, is ours.
        status = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return None
    if not stat.S_ISFIFO(status.st_mode) or flags & os.O_ACCMODE != os.O_WRONLY:
        return None
    return fd if status.st_ino == int(inode_text) else None


def forward(queue_name: str, items: list[Any]) -> bool:
    """Hand `items` for `queue_name` to the relay; False when this process must publish them itself."""
    fd = _write_fd()
    if fd is None:
        return False
    try:
        line = orjson.dumps([queue_name, items]) + b"\n"
    except TypeError:
        return False
    if len(line) > LINE_LIMIT:
        return False
    try:
        written = os.write(fd, line)
    except BlockingIOError:  # the relay is behind: publish here rather than wait
        return False
    except OSError as exc:  # EPIPE: the relay is gone; every later item goes the same way
        _give_up(exc)
        return False
    return written == len(line)  # a write of at most PIPE_BUF bytes is all or nothing


def _give_up(exc: OSError) -> None:
    global _writer
    log.warning("The publish relay is gone (%s); this worker publishes from its own thread from now on", exc)
    _writer = (os.getpid(), os.environ.get(RELAY_FD_VARIABLE, ""), None)


# --- the master's side (gunicorn.conf.py) -------------------------------------------------------------

_relay: subprocess.Popen[bytes] | None = None
_master_write_fd: int | None = None


def start() -> None:
    """Open the pipe, start the relay on its read end, and leave the write end to future workers."""
    global _relay, _master_write_fd
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # Linux only; the default size works too
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[attr-defined]
    os.set_blocking(write_fd, False)
    env = {name: value for name, value in os.environ.items() if name != RELAY_FD_VARIABLE}
    _relay = subprocess.Popen(  # noqa: S603 - this interpreter and module; nothing from outside
        [sys.executable, "-m", "sessions_app.publish_relay", str(read_fd)], pass_fds=[read_fd], env=env
    )
    os.close(read_fd)  # the relay is its only reader, so its exit shows as a broken pipe
    # Workers are forked, not exec'd, so they inherit the descriptor whatever its inheritable flag.
    os.environ[RELAY_FD_VARIABLE] = relay_variable(write_fd)
    _master_write_fd = write_fd


def stop(timeout: float = FLUSH_TIMEOUT + 5) -> None:
    """Close the master's write end; the relay publishes what it holds once every worker's is closed."""
    global _relay, _master_write_fd
    os.environ.pop(RELAY_FD_VARIABLE, None)
    if _master_write_fd is not None:
        os.close(_master_write_fd)
        _master_write_fd = None
    if _relay is None:
        return
    try:
        _relay.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # a worker that never exited still holds the pipe open
        _relay.terminate()
        _relay.wait(timeout=timeout)
    _relay = None


# --- the relay process ----------------------------------------------------------------------------------


class Relay:
    """Reads lines from the pipe and adds their items to this process's queues of the same names."""

    def __init__(self, read_fd: int, queues: dict[str, Any]) -> None:
        self.read_fd = read_fd
        self.queues = queues
        self._partial = b""

    def run(self, should_stop: Any = lambda: False, parent_pid: int | None = None) -> None:
        """Until every writer has closed the pipe, `should_stop()` holds, or the parent is gone."""
        while not should_stop():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("The gunicorn master is gone; the publish relay stops")
                break
            # A signal (a stop request) interrupts neither call: Python retries both (PEP 475).
            ready, _, _ = select.select([self.read_fd], [], [], 0.5)
            if ready:
                if not self._read_available():
                    break  # end of file: no worker and no master holds the write end any more
                time.sleep(READ_GATHER)
        self._drain()

    def _read_available(self) -> bool:
        """Take in what the pipe holds (called when it is readable); False at end of file."""
        data = os.read(self.read_fd, PIPE_SIZE)
        if not data:
            return False
        self._take(data)
        return True

    def _drain(self) -> None:
        # A stop request leaves what workers already wrote in the pipe: take that in too.
        while select.select([self.read_fd], [], [], 0)[0] and self._read_available():
            pass

    def _take(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # a line is written whole, but a read may end inside one
        for line in lines:
            try:
                name, items = orjson.loads(line)
                queue = self.queues[name]
            except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
                log.error("The publish relay dropped a line it cannot read (%s bytes)", len(line))
                continue
            queue.add_all(items)


def main(argv: list[str]) -> int:
    read_fd = int(argv[1])
    parent_pid = os.getppid()
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C reaches the whole process group: the relay finishes with what it holds, like the master.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from channels.layers import get_channel_layer

    from sessions_app.batched_enqueue import registered_queues
    from sessions_app.delivery import replies  # noqa: F401 - creates the reply queue

    get_channel_layer()  # creates the broadcast queue, when broadcasts are batched (Redis)
    queues = registered_queues()
    log.info("Publish relay %s started for queues: %s", os.getpid(), ", ".join(sorted(queues)))
    Relay(read_fd, queues).run(should_stop=lambda: stopping, parent_pid=parent_pid)
    deadline = time.monotonic() + FLUSH_TIMEOUT
    for queue in queues.values():
        queue.flush(timeout=max(0.0, deadline - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
