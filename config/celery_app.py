"""The one Celery app. `celery -A config worker --beat` runs a worker with the scheduler.

Configuration comes from Django settings (the CELERY_* names, including the one beat schedule,
CELERY_BEAT_SCHEDULE); the settings below are how tasks must behave, not deployment choices.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_configure.connect
def _configure(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

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
