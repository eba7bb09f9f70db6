"""Settings come from the environment and stop the process, naming the variable, on a bad value."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import Env

ROOT = Path(__file__).resolve().parent.parent


def load_settings(
    tmp_path: Path,
    code: str = "from django.conf import settings; settings.DATABASES; print('loaded')",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new interpreter whose settings come from `env` (and the data folder `tmp_path`)."""
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}}
    base.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(tmp_path),
            # Loading settings connects to nothing: any PostgreSQL URL will do unless a test names one.
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/settings_only",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "false", "SECRET_KEY": ""}, "SECRET_KEY"),
        ({"DEBUG": "false", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"DEBUG": "true", "SESSION_REUSE_WINDOW": "five minutes"}, "SESSION_REUSE_WINDOW"),
        ({"DEBUG": "true", "SESSION_REUSE_WINDOW": "-1"}, "SESSION_REUSE_WINDOW"),
        (
            {"DEBUG": "true", "SESSION_REUSE_WINDOW": "3600", "SESSION_ABANDON_AFTER": "1800"},
            "SESSION_REUSE_WINDOW",
        ),
        ({"DEBUG": "true", "PUBLIC_BASE_URL": "sessions.example.com"}, "PUBLIC_BASE_URL"),
        ({"DEBUG": "true", "PUBLIC_BASE_URL": "https://sessions.example.com/app"}, "PUBLIC_BASE_URL"),
        ({"DEBUG": "true", "DATABASE_URL": "mysql://root@localhost/x"}, "DATABASE_URL"),
        ({"DEBUG": "true", "DATABASE_URL": "sqlite:///data/db.sqlite3"}, "DATABASE_URL"),
        ({"DEBUG": "true", "DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DEBUG": "true", "REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DEBUG": "true", "EVENT_RETRY_SCHEDULE": "5,five"}, "EVENT_RETRY_SCHEDULE"),
        ({"DEBUG": "true", "EVENT_RETRY_SCHEDULE": "5,-1"}, "EVENT_RETRY_SCHEDULE"),
        ({"DEBUG": "true", "EVENT_RETRY_SCHEDULE": ","}, "EVENT_RETRY_SCHEDULE"),
        ({"DEBUG": "true", "EVENT_WEBHOOKS_ALLOW_PRIVATE": "sometimes"}, "EVENT_WEBHOOKS_ALLOW_PRIVATE"),
        ({"DEBUG": "true", "EVENT_LOG_RETENTION": "1"}, "EVENT_LOG_RETENTION"),
        ({"DEBUG": "true", "REPORTS_TODAY_INTERVAL": "60"}, "REPORTS_TODAY_INTERVAL"),
        ({"DEBUG": "true", "REPORTS_TODAY_MAX_AGE": "5"}, "REPORTS_TODAY_MAX_AGE"),
    ],
)
def test_it_refuses_to_start_on_a_bad_value(tmp_path, env, named):
    result = load_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


def test_it_starts_on_embedded_defaults_with_debug(tmp_path):
    result = load_settings(tmp_path, DEBUG="true", SECRET_KEY="", TWILIO_AUTH_TOKEN="")
    assert result.returncode == 0, result.stderr
    # Local-only secrets are generated once, readable by the owner alone.
    for name in ("dev-secret-key", "dev-twilio-auth-token"):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0


def test_it_starts_in_production_mode_with_the_required_values(tmp_path):
    result = load_settings(
        tmp_path,
        DEBUG="false",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="sessions.example.com",
        PUBLIC_BASE_URL="https://sessions.example.com",
    )
    assert result.returncode == 0, result.stderr


def test_env_reads_typed_values():
    env = Env({"N": " 42 ", "B": "yes", "L": "a, b,,c", "O": "https://h.example:8443/"})
    assert env.get_int("N", 0) == 42
    assert env.get_bool("B") is True
    assert env.get_list("L") == ["a", "b", "c"]
    assert env.get_origin("O") == "https://h.example:8443"
    assert env.get_int("MISSING", 7) == 7
    with pytest.raises(ImproperlyConfigured, match="N must be at most 10"):
        env.get_int("N", 0, maximum=10)


def test_the_event_retry_schedule_is_comma_separated_seconds():
    env = Env({"EVENT_RETRY_SCHEDULE": "1, 10,100"})
    assert env.get_int_list("EVENT_RETRY_SCHEDULE", [5]) == [1, 10, 100]
    assert Env({}).get_int_list("EVENT_RETRY_SCHEDULE", [5, 300]) == [5, 300]
