"""The scaling settings (docs/scaling.md) stop the process, naming the variable, on a bad value,
and give the beat, the broker and the databases what the docs say."""

import json

import pytest

from tests.test_settings import load_settings

SHOW = (
    "from django.conf import settings as s; import json; print(json.dumps({"
    "'scheduler': getattr(s, 'CELERY_BEAT_SCHEDULER', None), "
    "'lock': getattr(s, 'CELERY_REDBEAT_LOCK_TIMEOUT', None), "
    "'loop': getattr(s, 'CELERY_BEAT_MAX_LOOP_INTERVAL', None), "
    "'visibility': s.CELERY_BROKER_TRANSPORT_OPTIONS.get('visibility_timeout'), "
    "'cursors_off': s.DATABASES['default'].get('DISABLE_SERVER_SIDE_CURSORS', False), "
    "'layer_host': s.DATABASES['channels_postgres']['HOST']}))"
)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_POOLER": "pgbouncer"}, "DATABASE_POOLER"),
        ({"DATABASE_DIRECT_URL": "mysql://x@db/x"}, "DATABASE_DIRECT_URL"),
        ({"DATABASE_REPLICA_URL": "sqlite:///x.db"}, "DATABASE_REPLICA_URL"),
        ({"DATABASE_POOLER": "transaction"}, "DATABASE_DIRECT_URL"),  # no Redis: LISTEN needs one
        ({"BEAT_LOCK_TIMEOUT": "5", "BEAT_MAX_INTERVAL": "5"}, "BEAT_LOCK_TIMEOUT"),
    ],
)
def test_a_bad_scaling_setting_stops_the_process_naming_it(tmp_path, env, named):
    result = load_settings(tmp_path, DEBUG="true", **env)
    assert result.returncode != 0
    assert named in result.stderr


def test_with_redis_the_beat_leads_by_lock_and_the_broker_redelivers_within_lease_and_backoff(tmp_path):
    result = load_settings(
        tmp_path,
        SHOW,
        DEBUG="true",
        REDIS_URL="redis://127.0.0.1:6379/5",
        DATABASE_URL="postgres://app@pgbouncer.example.com:6432/sessions",
        DATABASE_POOLER="transaction",
        DATABASE_DIRECT_URL="postgres://app@primary.example.com:5432/sessions",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "scheduler": "config.beat.LeaderScheduler",
        "lock": 20,
        "loop": 5,
        "visibility": 300 + 60,
        "cursors_off": True,
        "layer_host": "primary.example.com",
    }


def test_without_redis_the_embedded_beat_keeps_its_file_schedule(tmp_path):
    result = load_settings(tmp_path, SHOW, DEBUG="true")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert (shown["scheduler"], shown["visibility"], shown["cursors_off"]) == (None, None, False)
