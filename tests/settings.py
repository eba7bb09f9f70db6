"""Test settings: the real settings module, with the few values a test run needs filled in."""

import os
from typing import Any, cast

from tests.parallel import worker, worker_redis_url

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret-long-enough-for-hmac-sha256")
os.environ.setdefault("TWILIO_AUTH_TOKEN", "test-auth-token-not-a-secret")
os.environ.setdefault("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000000")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# A fixed, test-only Fernet key (tests that rotate keys override the setting).
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWtleS1ub3QtYS1zZWNyZXQtMDAwMDA=")

# Under pytest-xdist each worker has a Redis db of its own (tests/parallel.py), in os.environ so the
# servers and workers it starts get it too. They inherit the marker and keep the URL as it is.
if worker() and os.environ.get("REDIS_URL") and os.environ.get("TESTS_REDIS_URL_OF") != worker():
    os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"])
    os.environ["TESTS_REDIS_URL_OF"] = worker()

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# Servers the tests start in another process serve static files straight from the app folders.
WHITENOISE_USE_FINDERS = True

# Tasks run inline unless a test starts a real worker (tests/sessions_app/test_worker.py).
CELERY_TASK_ALWAYS_EAGER = True
# Outbound sending is off unless a test turns it on against a local Twilio stand-in.
TWILIO_ACCOUNT_SID = ""
# Eager drains stop at their first empty claim instead of lingering in the test (tests of the drain's
# promises set a linger of their own: tests/sessions_app/test_reply_drain.py).
REPLY_DRAIN_LINGER_MS = 0
# Most tests never run on-commit callbacks, so no reply comes; don't wait long for one.
VOICE_REPLY_WAIT = 0.1
# The same for the chat APIs that wait for their answer (seed 001's messages, seed 004's chat): an
# eager reply is stored before the wait starts, so a test that gets one never waits; one that does
# not (no on-commit callbacks, or a reply that fails) waited the default 10 s, six times a run.
AGENT_REPLY_TIMEOUT = 1
# A second alias on the same test database, as DATABASE_REPLICA_URL makes one (tests/test_replica.py):
# unused unless a test sets DATABASE_REPLICA_ALIAS.
DATABASES.setdefault("replica", {**DATABASES["default"], "TEST": {"MIRROR": "default"}})  # noqa: F405
# Redis pub/sub ignores the db number: without a prefix of their own, one worker's servers would
# hear the other's socket events (the staff group and a business's group have fixed names).
if worker() and "channels_redis" in CHANNEL_LAYERS["default"]["BACKEND"]:  # noqa: F405
    cast("dict[str, Any]", CHANNEL_LAYERS["default"]["CONFIG"])["prefix"] = f"asgi-{worker()}"  # noqa: F405
