"""Hand work to a broker in batches, from a background thread, so a busy web process pays per batch.

Used for Celery tasks (the replies owed, `replies.py`) and for broadcasts (`realtime/layers.py`).

Publishing one Celery task costs about a millisecond of CPU (building the message, kombu, a Redis
round trip): more than storing the inbound message itself. A webhook therefore hands the id of the
work it owes to this process-wide queue (microseconds) and answers; one thread per process publishes
everything that gathered meanwhile as one task. At low traffic that is one id per task, as before;
under load batches grow: what arrives while one publish runs goes in the next, and while batches
follow each other closely the thread lingers a moment to gather more.

Nothing is lost by queuing in memory: the work is already owed in the database (`reply_state`), and
`recover_owed_work` queues whatever never reached a worker (a process that died, a broker outage),
exactly as it did when a direct publish failed. docs/tasks.md has the trade-offs.

Under gunicorn the workers hand their items to one publish relay process instead
(`publish_relay.py`), which adds them to its own queue of the same name: one publisher for the whole
server. What the relay cannot take is published here, by the worker's own thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from sessions_app import publish_relay

log = logging.getLogger(__name__)

Item = TypeVar("Item")

# By name, for the publish relay, which adds the items it receives to its own queue of that name.
_queues: dict[str, BatchedEnqueue[Any]] = {}


def registered_queues() -> dict[str, BatchedEnqueue[Any]]:
    return dict(_queues)


class BatchedEnqueue(Generic[Item]):
    def __init__(
        self, name: str, send: Callable[[list[Item]], object], max_batch: int, linger: float = 0.0
    ) -> None:
        self.name = name
        self._send = send
        self._max_batch = max_batch
        self._linger = linger
        self._pending: list[Item] = []
        self._wake = threading.Condition()
        self._pid: int | None = None  # the process whose thread runs; a forked child starts its own
        self._busy = False
        self._last_send = float("-inf")
        _queues[name] = self

    def add(self, item: Item) -> None:
        self.add_all((item,))

    def add_all(self, items: Iterable[Item]) -> None:
        items = list(items)
        if publish_relay.forward(self.name, items):
            return
        with self._wake:
            if self._pid != os.getpid():
                self._start()
            was_empty = not self._pending
            self._pending.extend(items)
            # Wake the thread only when it has something new to decide: the first item (it waits
            # for one) or a full batch (it may be lingering for one). A wake-up per item would cost
            # a thread switch per item, more than the batching saves.
            if was_empty or len(self._pending) >= self._max_batch:
                self._wake.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything added so far was handed to the broker (or failed to be)."""
        with self._wake:
            if self._pid != os.getpid():
                return True  # nothing was added in this process
            return self._wake.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._pending = []  # inherited from the parent: the parent's thread owns those
        threading.Thread(target=self._run, name=f"enqueue-{self.name}", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: bool(self._pending))
                since_last = time.monotonic() - self._last_send
                if since_last < self._linger:
                    # Busy (the previous batch left a moment ago): gather until `linger` after it,
                    # or at tens of messages a second per process every batch would be a batch of
                    # one. So at most one batch per `linger` while busy, and no item waits longer
                    # than that for its batch; an item after a quiet spell goes at once.
                    self._wake.wait_for(
                        lambda: len(self._pending) >= self._max_batch, self._linger - since_last
                    )
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self._busy = True
            self._last_send = time.monotonic()
            try:
                self._send(batch)
            except Exception:  # the work stays owed in the database; recovery queues it
                log.exception("Could not queue %s for %s item(s)", self.name, len(batch))
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()


def flush_at_exit(queue: BatchedEnqueue[Item]) -> None:
    """A process that exits cleanly (a worker being replaced) first hands over what it gathered."""
    atexit.register(queue.flush)
