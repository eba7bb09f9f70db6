"""The one Celery app. `celery -A config worker --beat` runs a worker with the scheduler.

Configuration comes from Django settings (the CELERY_* names, including the one beat schedule,
CELERY_BEAT_SCHEDULE); the settings below are how tasks must behave, not deployment choices.
"""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")


@app.on_configure.connect
def _configure(sender: Celery, **kwargs: object) -> None:
    # The CELERY_* settings as a dict read once, when Celery first configures itself (before that the
    # settings may still be loading), rather than `config_from_object("django.conf:settings")`: Celery
    # looks up a dozen names for every task it queues, and each name missing from Django's settings
    # object cost an AttributeError there, 2 % of an inbound SMS's instructions (docs/tasks.md).
    names = [name for name in dir(settings) if name.startswith("CELERY_")]
    sender.config_from_object({name: getattr(settings, name) for name in names}, namespace="CELERY")
    sender.conf.update(
        task_ignore_result=True,
        # acks_late + reject_on_worker_lost: a task whose worker dies is delivered again; the
        # atomic claims in replies.py and outbound.py make the second run harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A broker that is down must not hold up the web request that enqueues: fail fast, the
        # work stays owed in the database and the recovery task re-queues it.
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
    )
    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        # The filesystem transport has no fan-out, which remote control and events need.
        sender.conf.update(worker_enable_remote_control=False, worker_send_task_events=False)


app.autodiscover_tasks(["sessions_app"])
