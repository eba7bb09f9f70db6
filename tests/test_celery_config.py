"""Celery's configuration (config/celery_app.py): every CELERY_* Django setting, read once as a dict,
and the task behaviour the app sets for itself."""

from __future__ import annotations

from django.conf import settings

from config.celery_app import app


def test_every_celery_setting_reaches_celerys_configuration() -> None:
    names = [name for name in dir(settings) if name.startswith("CELERY_")]
    assert {"CELERY_BROKER_URL", "CELERY_BEAT_SCHEDULE", "CELERY_TASK_ALWAYS_EAGER"} <= set(names)
    for name in names:
        assert app.conf[name.removeprefix("CELERY_").lower()] == getattr(settings, name), name


def test_the_app_keeps_its_own_task_behaviour_beside_the_settings() -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_ignore_result is True
