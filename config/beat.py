"""The beat scheduler with Redis: celery-redbeat's, made to outlive Redis outages and restarts.

redbeat keeps the schedule in Redis and lets only the beat holding its lock send (docs/scaling.md,
"Schedulers in any number"). As shipped, two things stop a beat for good: a Redis error in a tick
(Redis restarting, a failover) propagates and ends the beat, and a lock found gone at renewal
(a Redis that came back empty, or a stall past the lock's timeout while another took over) raises
`LockNotOwnedError`, which ends it too. In production a supervisor would restart it; the beat
embedded in `python3 run.py serve`'s worker has none, and a dead beat is exactly what the
schedulers-in-any-number design removes. So here:

- a Redis error in a tick is logged and the tick is tried again after `max_interval` seconds;
- a Redis that does not answer while the beat starts leaves it waiting, not ended;
- a beat without the lock (lost, or never acquired because Redis was down at start) tries to take
  it at every tick without blocking; when it does, it installs the schedule again (a Redis that
  restarted empty has none) and sends; when another beat holds it, it stays a standby.

`tests/sessions_app/test_worker.py` restarts the broker's Redis under a worker with embedded beat;
`tests/sessions_app/test_schedulers.py` kills a leader.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


class LeaderScheduler(RedBeatScheduler):
    lock: Any = None  # redis-py's Lock while this beat leads (redbeat leaves it untyped)
    _installed = False  # whether the schedule is in Redis (this beat put it there)

    def setup_schedule(self) -> None:
        # Celery calls it while constructing the scheduler: with Redis down, that would end the beat.
        try:
            super().setup_schedule()
        except RedisError as exc:
            log.warning(
                "Beat: Redis did not answer at start (%s); the schedule waits for it", type(exc).__name__
            )
            self._installed = False
        else:
            self._installed = True

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if not self._renew_lock() and not self._take_lock():
                return float(self.max_interval)  # another beat leads: wait as a standby
            if not self._installed:
                super().setup_schedule()
                self._installed = True
            return float(super().tick(min=min, **kwargs))
        except RedisError as exc:
            log.warning(
                "Beat: Redis did not answer (%s); trying again in %ss", type(exc).__name__, self.max_interval
            )
            return float(self.max_interval)

    def _renew_lock(self) -> bool:
        if not self.lock_key:
            return True  # no lock configured: redbeat sends without one
        if self.lock is None:
            return False
        try:
            self.lock.extend(int(self.lock_timeout))
        except LockError:
            log.warning("Beat: the leader lock was lost (Redis restarted, or this beat stalled past it)")
            self.lock = None
            return False
        return True

    def _take_lock(self) -> bool:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # as redbeat's own acquire
        if not lock.acquire(blocking=False):
            return False
        self.lock = lock
        self._installed = False  # a Redis that came back empty has no schedule: install it again
        log.info("Beat: took the leader lock")
        return True
