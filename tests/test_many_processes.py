"""Many machines, on loopback: two web servers, two workers and two schedulers against one
PostgreSQL and one Redis, and one process of each kind killed with -9 while traffic flows.

Each contact's texts alternate between the two web servers and must still join one session. The
test's client stands in for the load balancer and for Twilio's retry: a request a dead server
cannot answer goes to the other one with the same MessageSid. Killed along the way: one web server,
one worker (its whole process group) and the scheduler holding the leader lock. Afterwards every
text is stored once, answered once, and each answer handed to Twilio (a local stand-in,
tests/twilio_api.py) exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from django.conf import settings
from django.db.models import Q
from twilio.request_validator import RequestValidator

from sessions_app.models import Message, ReplyState, Role, Session
from tests.servers import AsgiServer
from tests.sessions_app.test_worker import process_env
from tests.sessions_app.test_worker_killed import WORKER, celery, kill_group, start, wait_until
from tests.twilio_api import ACCOUNT, running_twilio
from tests.twilio_helpers import sms_params

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis: set REDIS_URL to run"),
    # Whole fleets of processes: never at the same time as another such test (run.py's PARALLEL).
    pytest.mark.xdist_group("fleets"),
]

CONTACTS = [f"+1555300{n:04d}" for n in range(10)]
TEXTS_EACH = 6


def test_two_of_everything_on_loopback_survive_one_of_each_killed(tmp_path):
    with running_twilio(delay=0.1) as twilio:
        env = process_env(tmp_path, os.environ["REDIS_URL"])
        prefix = f"test-many-{uuid.uuid4().hex[:8]}:"
        env.update(
            TWILIO_ACCOUNT_SID=ACCOUNT,
            TWILIO_API_BASE_URL=twilio.url,
            TASK_LEASE="5",
            TASK_RECOVERY_INTERVAL="1",
            TASK_RECOVERY_GRACE="1",
            TASK_RETRY_BACKOFF="0",
            TASK_RETRY_BACKOFF_MAX="1",
            SESSION_SWEEP_INTERVAL="3600",
            BEAT_KEY_PREFIX=prefix,
        )
        logs = [tmp_path / f"{name}.log" for name in ("beat-1", "beat-2", "worker-1", "worker-2")]
        broker = redis.Redis.from_url(os.environ["REDIS_URL"])
        webs = [AsgiServer(**env).start(timeout=60), AsgiServer(**env).start(timeout=60)]
        processes = []
        try:
            # The first scheduler takes the leader lock before the second starts.
            leader = start(celery("beat"), env, logs[0])
            processes.append(leader)
            wait_until(lambda: broker.exists(f"{prefix}:lock"), 60, "the first beat's lock", logs)
            processes.append(start(celery("beat"), env, logs[1]))
            doomed_worker = start(celery(*WORKER), env, logs[2])
            processes += [doomed_worker, start(celery(*WORKER), env, logs[3])]

            alive = [True, True]
            sent = 0
            lock = threading.Lock()
            validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)

            def post(server: int, params: dict[str, str]) -> int:
                """To `server`, or to the other when it is down (same MessageSid: Twilio's retry)."""
                nonlocal sent
                for index in (server, 1 - server):
                    if not alive[index]:
                        continue
                    url = f"{webs[index].url}/webhooks/twilio/sms/"
                    headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
                    try:
                        status = requests.post(url, data=params, headers=headers, timeout=30).status_code
                    except requests.ConnectionError:
                        continue
                    with lock:
                        sent += 1
                    return status
                return 0

            def contact(phone: str) -> list[int]:
                statuses = []
                for n in range(TEXTS_EACH):
                    statuses.append(post(n % 2, sms_params(phone, f"Text {n} from {phone}")))
                    time.sleep(0.3)
                return statuses

            with ThreadPoolExecutor(max_workers=len(CONTACTS)) as pool:
                results = pool.map(contact, CONTACTS)
                total = len(CONTACTS) * TEXTS_EACH
                wait_until(lambda: sent >= total // 4, 60, "a quarter of the texts", logs)
                alive[0] = False
                webs[0].process.send_signal(signal.SIGKILL)
                wait_until(lambda: sent >= total // 2, 60, "half of the texts", logs)
                kill_group(doomed_worker)
                wait_until(lambda: sent >= 3 * total // 4, 60, "three quarters of the texts", logs)
                kill_group(leader)
                statuses = [status for result in results for status in result]
            assert statuses == [200] * total

            def all_answered_and_sent() -> bool:
                replies = Message.objects.filter(role=Role.AGENT)
                return (
                    Message.objects.filter(role=Role.CONTACT).count() == total
                    and not Message.objects.filter(role=Role.CONTACT)
                    .exclude(reply_state=ReplyState.DONE)
                    .exists()
                    and replies.count() >= total
                    # Sent: Twilio's id stored on it (an unsent reply's is NULL).
                    and not replies.filter(Q(external_id=None) | Q(external_id="")).exists()
                )

            wait_until(all_answered_and_sent, 120, "every text answered and sent", logs)
            time.sleep(6)  # a lease more: a duplicate would show now
        finally:
            for process in processes:
                kill_group(process, signal.SIGTERM)
            for web in webs:
                web.stop()
            for key in broker.scan_iter(match=prefix + "*"):
                broker.delete(key)

    sessions = Session.objects.filter(contact__phone__in=CONTACTS)
    assert sessions.count() == len(CONTACTS)  # each contact's alternating texts in one session
    for session in sessions:
        assert session.messages.filter(role=Role.CONTACT).count() == TEXTS_EACH
    inbound = Message.objects.filter(role=Role.CONTACT)
    replies = list(Message.objects.filter(role=Role.AGENT))
    assert sorted(r.in_reply_to_id for r in replies) == sorted(inbound.values_list("pk", flat=True))
    assert sorted(record["sid"] for record in twilio.created) == sorted(r.external_id for r in replies)
