"""Settings, read once from the environment and validated (see README "Settings")."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import Env

env = Env()
log = logging.getLogger("config")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.get_str("DATA_DIR", str(BASE_DIR / "data"))).resolve()

DEBUG = env.get_bool("DEBUG", default=False)


def _local_secret(filename: str, purpose: str, make: Callable[[], str] | None = None) -> str:
    """A secret generated once into the data folder, for local runs only (owner-only permissions)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / filename
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make() if make else secrets.token_urlsafe(32))
        log.warning(
            "Generated a local %s in %s (DEBUG only; set it in the environment in production)", purpose, path
        )
    return path.read_text().strip()


SECRET_KEY = env.get_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _local_secret("dev-secret-key", "Django SECRET_KEY")

ALLOWED_HOSTS = env.get_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off (comma-separated host names)")

PUBLIC_BASE_URL = env.get_origin("PUBLIC_BASE_URL")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "sessions_app",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
# PostgreSQL only (docs/database.md). `python3 run.py serve|test|manage` start an embedded PostgreSQL
# and set DATABASE_URL when it is unset; anything else (gunicorn, celery, a deployment) names one.
DATABASE_URL = env.get_str("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL must be set to a postgres:// URL (python3 run.py serve, test and manage start an "
        "embedded PostgreSQL and set it when it is unset)"
    )
try:
    # No per-request health check: it costs a round trip on every webhook; a connection lost to a
    # database restart fails one request (503, which Twilio retries) and is then replaced.
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=False)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL I understand: {exc}") from None
if _db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        f"DATABASE_URL must be a postgres:// URL, not {DATABASE_URL.split(':', 1)[0]}://…"
    )
_options = _db.setdefault("OPTIONS", {})
# Parameters travel apart from the SQL text (the extended query protocol): the ingest call's values
# are neither quoted into the statement by psycopg nor lexed back out by the server (docs/ingest.md).
# No named prepared statements (`prepare_threshold` None): none can outlive a migration that changes
# a function's result, and a PgBouncer in transaction mode needs no extra setting.
_options.setdefault("server_side_binding", True)
_options.setdefault("prepare_threshold", None)
DATABASES = {"default": _db}

# A pooler in transaction mode (PgBouncer's pool_mode = transaction) between the processes and
# PostgreSQL (docs/scaling.md, "PgBouncer"): each transaction may run on another server connection,
# so nothing may outlive one. Django's server-side cursors (QuerySet.iterator()) do, so they are off;
# everything else already holds: advisory locks and settings are transaction-scoped
# (pg_advisory_xact_lock, SET LOCAL, set_config(..., true)) and nothing is prepared under a name.
DATABASE_POOLER = env.get_str("DATABASE_POOLER", "none")
if DATABASE_POOLER not in {"none", "transaction"}:
    raise ImproperlyConfigured(
        f"DATABASE_POOLER must be none or transaction (a pooler in transaction mode), not {DATABASE_POOLER!r}"
    )
if DATABASE_POOLER == "transaction":
    _db["DISABLE_SERVER_SIDE_CURSORS"] = True
# LISTEN needs a session of its own: the channels-postgres layer (sockets without Redis) connects
# here, straight to PostgreSQL past the pooler. Unset: DATABASE_URL.
DATABASE_DIRECT_URL = env.get_str("DATABASE_DIRECT_URL")
_direct: dict[str, Any] = {key: value for key, value in _db.items() if key != "DISABLE_SERVER_SIDE_CURSORS"}
if DATABASE_DIRECT_URL:
    try:
        _direct = dict(dj_database_url.parse(DATABASE_DIRECT_URL, conn_max_age=600, conn_health_checks=False))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_DIRECT_URL is not a database URL I understand: {exc}") from None
    if _direct["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_DIRECT_URL must be a postgres:// URL")
    _direct["OPTIONS"] = {
        **_direct.get("OPTIONS", {}),
        "server_side_binding": True,
        "prepare_threshold": None,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A read replica for lists and reports (config/replica.py, docs/scaling.md): GETs of the views below
# read the domain's tables there until they write. Unset: everything on DATABASE_URL.
DATABASE_REPLICA_URL = env.get_str("DATABASE_REPLICA_URL")
DATABASE_REPLICA_ALIAS = ""
if DATABASE_REPLICA_URL:
    try:
        _replica = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=600, conn_health_checks=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"DATABASE_REPLICA_URL is not a database URL I understand: {exc}"
        ) from None
    if _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be a postgres:// URL")
    _replica.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=None)
    _replica["DISABLE_SERVER_SIDE_CURSORS"] = _db.get("DISABLE_SERVER_SIDE_CURSORS", False)
    DATABASES["replica"] = {**_replica, "TEST": {"MIRROR": "default"}}
    DATABASE_REPLICA_ALIAS = "replica"
DATABASE_ROUTERS = ["config.replica.ReplicaRouter"]
MIDDLEWARE += ["config.replica.ReplicaReadsMiddleware"]
DATABASE_REPLICA_VIEWS = frozenset(
    {
        "sessions_ui:list",
        "sessions_ui:list-updates",
        "session-list",
        "session-messages",
        "contact-list",
        "channel-list",
        "agent-history",
        "workspace-sessions",
        "characters-sessions",
    }
)

# --- Redis (optional) -----------------------------------------------------------------------------
REDIS_URL = env.get_str("REDIS_URL")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, not {REDIS_URL!r}")

CACHES: dict[str, dict[str, Any]]
# With Redis, django-redis: Django's own Redis backend builds a `redis.Redis` client for every cache
# call (about 0.2 ms of CPU); django-redis keeps one per process. The kick flags of the event
# deliveries are read on every commit: 6.92 -> 6.17 M instructions per webhook with five endpoints
# (`bench/ingest_cpu.py --instructions --event-endpoints 5 --redis-url ...`, docs/benchmarks.md).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Each process's own memory, for what every request reads and staff rarely change (the channels an
# inbound message arrives on: sessions_app/ingest/channels.py). Never shared between processes.
CACHES["process"] = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "process",
    "OPTIONS": {"MAX_ENTRIES": 10_000},
}

# --- Twilio ---------------------------------------------------------------------------------------
TWILIO_ACCOUNT_SID = env.get_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env.get_str("TWILIO_AUTH_TOKEN")
if not TWILIO_AUTH_TOKEN and DEBUG:
    # Lets `send_test_message` sign webhooks against a local run without a Twilio account.
    TWILIO_AUTH_TOKEN = _local_secret("dev-twilio-auth-token", "Twilio auth token for test webhooks")

# --- Session rules --------------------------------------------------------------------------------
SESSION_REUSE_WINDOW = env.get_int("SESSION_REUSE_WINDOW", 300, minimum=0)
SESSION_ABANDON_AFTER = env.get_int("SESSION_ABANDON_AFTER", 30 * 60, minimum=0)
SESSION_ARCHIVE_AFTER = env.get_int("SESSION_ARCHIVE_AFTER", 7 * 24 * 3600, minimum=0)
# Seconds after a session was closed or resolved in which its contact's next message reopens it
# (per-channel override: Channel.reopen_window); 0 never reopens (docs/session-boundaries.md).
SESSION_REOPEN_WINDOW = env.get_int("SESSION_REOPEN_WINDOW", 0, minimum=0)
if SESSION_ABANDON_AFTER and SESSION_REUSE_WINDOW > SESSION_ABANDON_AFTER:
    raise ImproperlyConfigured(
        f"SESSION_REUSE_WINDOW ({SESSION_REUSE_WINDOW}s) must not be longer than "
        f"SESSION_ABANDON_AFTER ({SESSION_ABANDON_AFTER}s): a session would be abandoned while it "
        "could still be reused"
    )
SMS_MAX_BODY_LENGTH = 1600

# --- The rest -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.get_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/sessions/"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOG_LEVEL = env.get_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(levelname)s] %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "sessions_app": {"level": LOG_LEVEL},
        "webhooks": {"level": LOG_LEVEL},
        "config": {"level": LOG_LEVEL},
        # It warns on every broadcast to a group no socket has joined: most broadcasts, on most days.
        "channels_postgres": {"level": "ERROR"},
    },
}

# --- Data protection (docs/data-protection.md) ----------------------------------------------------
# Session metadata is encrypted with these Fernet keys: the first encrypts, all decrypt.
FIELD_ENCRYPTION_KEYS = env.get_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be set when DEBUG is off (comma-separated Fernet keys, newest "
            'first; make one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())")'
        )
    from cryptography.fernet import Fernet

    FIELD_ENCRYPTION_KEYS = [
        _local_secret(
            "dev-field-encryption-key",
            "field encryption key (FIELD_ENCRYPTION_KEYS)",
            lambda: Fernet.generate_key().decode(),
        )
    ]
from sessions_app.privacy.crypto import parse_keys  # noqa: E402 - validates the keys at start-up

parse_keys(FIELD_ENCRYPTION_KEYS)

# Seconds after their last activity before archived sessions are deleted; 0 keeps them forever.
SESSION_PURGE_AFTER = env.get_int("SESSION_PURGE_AFTER", 0, minimum=0)

# The safety net for logs: any "+" and 8-15 digits in any record is masked like phones.mask_phone.
LOGGING["filters"] = {"mask_phone_numbers": {"()": "sessions_app.privacy.logfilters.MaskPhoneNumbers"}}
cast("dict[str, dict[str, Any]]", LOGGING["handlers"])["console"]["filters"] = ["mask_phone_numbers"]
# The Twilio SDK logs API requests (numbers, message text) at INFO; keep it to warnings.
cast("dict[str, Any]", LOGGING["loggers"])["twilio"] = {"level": "WARNING"}
# No format here or in Celery's worker prints a record's thread, so it is not collected (the
# logging HOWTO's "Optimization" section; its public switch). The process name stays: Celery
# prints it.
logging.logThreads = False

# --- HTTPS (README "Production") ------------------------------------------------------------------
# With DEBUG off and an https PUBLIC_BASE_URL, secure defaults; each can be relaxed by its variable.
HTTPS_ONLY = not DEBUG and PUBLIC_BASE_URL.startswith("https://")
_proxy_header = env.get_str("SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    _name, _, _value = _proxy_header.partition("=")
    if not _name.startswith("HTTP_") or not _name[5:].replace("_", "").isalnum():
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must name the request header the proxy sets, as Django sees it "
            f"(e.g. HTTP_X_FORWARDED_PROTO or HTTP_X_FORWARDED_PROTO=https), not {_proxy_header!r}"
        )
    SECURE_PROXY_SSL_HEADER = (_name, _value or "https")
if PUBLIC_BASE_URL:
    CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL]
SESSION_COOKIE_SECURE = env.get_bool("SESSION_COOKIE_SECURE", HTTPS_ONLY)
CSRF_COOKIE_SECURE = env.get_bool("CSRF_COOKIE_SECURE", HTTPS_ONLY)
SECURE_SSL_REDIRECT = env.get_bool("SECURE_SSL_REDIRECT", HTTPS_ONLY)
# Twilio does not follow redirects: a webhook answered with a redirect is a lost message, and a
# redirect would not make an http call any safer (its signature is checked against the https URL).
SECURE_REDIRECT_EXEMPT = [r"^webhooks/"]
# Load balancers and orchestrators probe nodes over plain http (config/health.py).
SECURE_REDIRECT_EXEMPT += [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.get_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.get_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS_ONLY)
SECURE_HSTS_PRELOAD = env.get_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Asking browsers to preload HTTPS for the whole domain is a decision for the domain's owner,
    # hard to undo; it is opt-in (SECURE_HSTS_PRELOAD=true), so Django's reminder is silenced.
    SILENCED_SYSTEM_CHECKS = [*globals().get("SILENCED_SYSTEM_CHECKS", []), "security.W021"]
if HTTPS_ONLY:
    HTTPS_STARTUP_NOTE = "HTTPS settings on: secure cookies, HSTS, HTTPS redirect (webhooks exempt)" + (
        f"; TLS recognised from {SECURE_PROXY_SSL_HEADER[0]}"
        if _proxy_header
        else "; behind a proxy that terminates TLS, set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO"
    )
else:
    HTTPS_STARTUP_NOTE = "HTTPS settings off (no secure cookies, HSTS or HTTPS redirect): " + (
        "DEBUG is on" if DEBUG else f"PUBLIC_BASE_URL is {PUBLIC_BASE_URL or 'unset'}, not https://"
    )

# --- Real-time (Django Channels) ------------------------------------------------------------------
# Sockets in every process share one layer, so a reply produced in the worker process reaches a
# socket held by a web process: with Redis, channels-redis's pub/sub layer; without it (the embedded
# default), channels-postgres, PostgreSQL's LISTEN/NOTIFY with a table for the messages
# (docs/realtime.md). Both are maintained layers; nothing of ours is in between.
# channels-postgres's tables are in the product's database whichever layer runs (so a deployment can
# move between the two); its own ORM calls use the alias `channels_postgres`: the same database (a
# test run's too: MIRROR). Its connections are its own: a small pool per process, and one that
# LISTENs in each process holding sockets.
INSTALLED_APPS += ["channels_postgres"]
DATABASES["channels_postgres"] = cast("dj_database_url.DBConfig", {**_direct, "TEST": {"MIRROR": "default"}})
POSTGRES_CHANNEL_LAYER: dict[str, Any] = {
    "BACKEND": "sessions_app.realtime.postgres_layer.PostgresChannelLayer",
    "CONFIG": {
        **{key: _direct[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")},
        "TIME_ZONE": None,  # Django's connection settings it builds its connection from need it
        "PSYCOPG_OPTIONS": {"min_size": 1, "max_size": 4},
    },
}
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": POSTGRES_CHANNEL_LAYER}
    if DATABASE_POOLER == "transaction" and not DATABASE_DIRECT_URL:
        raise ImproperlyConfigured(
            "DATABASE_POOLER=transaction without REDIS_URL needs DATABASE_DIRECT_URL: the socket layer "
            "LISTENs on PostgreSQL, which a pooler in transaction mode cannot carry"
        )

# How often a staff page asks for changes when the real-time socket is not connected (milliseconds).
STAFF_UI_POLL_MS = env.get_int("STAFF_UI_POLL_MS", 4000, minimum=500)

# --- Tasks (Celery) -------------------------------------------------------------------------------
# With REDIS_URL, Redis is the broker. Without it, kombu's filesystem transport in the data folder:
# the embedded default needs no server at all (see docs/tasks.md for why, and what was rejected).
CELERY_BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env.get_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
else:
    # Redelivery after a worker dies mid-task: set below from TASK_LEASE.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport, but one client per channel for publishing (config/broker.py says why).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
CELERY_TASK_ALWAYS_EAGER = env.get_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# The most sessions one sweep statement moves; batches start smaller and shrink whenever a statement
# takes longer than a quarter of a second (sessions_app/lifecycle/sweep.py, docs/sweep.md).
SESSION_SWEEP_BATCH_SIZE = env.get_int("SESSION_SWEEP_BATCH_SIZE", 5000, minimum=1)
# Connections one sweep drains a large backlog on (PostgreSQL only).
SESSION_SWEEP_PARALLEL = env.get_int("SESSION_SWEEP_PARALLEL", 2, minimum=1, maximum=16)
# How often the lifecycle sweep runs (seconds; beat schedules it).
SESSION_SWEEP_INTERVAL = env.get_int("SESSION_SWEEP_INTERVAL", 60, minimum=1)
# How often the recovery task looks for replies and deliveries that never reached a worker, and how
# old such work must be before it is re-queued (so work whose task is merely in flight is left alone).
TASK_RECOVERY_INTERVAL = env.get_int("TASK_RECOVERY_INTERVAL", 60, minimum=1)
TASK_RECOVERY_GRACE = env.get_int("TASK_RECOVERY_GRACE", 60, minimum=0)
# A claim older than this is presumed lost with its worker (longer than an agent call with retries).
TASK_LEASE = env.get_int("TASK_LEASE", 300, minimum=1)
# The reply drain (sessions_app/delivery/reply_drain.py): how many drains may answer owed replies at
# once, and how long (ms) a drain goes on claiming after its last reply, a promise web processes read
# so that a commit then queues nothing. Every process must have the same values.
REPLY_DRAINS = env.get_int("REPLY_DRAINS", 4, minimum=1, maximum=64)
REPLY_DRAIN_LINGER_MS = env.get_int("REPLY_DRAIN_LINGER_MS", 500, minimum=0, maximum=60_000)
TASK_MAX_ATTEMPTS = env.get_int("TASK_MAX_ATTEMPTS", 5, minimum=1, maximum=20)
TASK_RETRY_BACKOFF = env.get_int("TASK_RETRY_BACKOFF", 2, minimum=0)
TASK_RETRY_BACKOFF_MAX = env.get_int("TASK_RETRY_BACKOFF_MAX", 60, minimum=0)
if "visibility_timeout" in CELERY_BROKER_TRANSPORT_OPTIONS:
    # A worker killed with -9 never acks or rejects its tasks: Redis hands them out again after the
    # visibility timeout. The database's recovery already re-queues their work within TASK_LEASE +
    # TASK_RECOVERY_INTERVAL (docs/scaling.md, "Workers killed mid-task"); the broker's redelivery
    # is the second line, and must not come before a retry's countdown (which the worker holds
    # unacked) has run out: so lease plus the longest backoff, six minutes by default, not an hour.
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = TASK_LEASE + TASK_RETRY_BACKOFF_MAX
CELERY_BEAT_SCHEDULE = {
    "sweep-sessions": {
        "task": "sessions_app.tasks.sweep_sessions_task",
        "schedule": float(SESSION_SWEEP_INTERVAL),
    },
    "recover-owed-work": {
        "task": "sessions_app.tasks.recover_owed_work",
        "schedule": float(TASK_RECOVERY_INTERVAL),
    },
    "warm-staff-chart": {"task": "sessions_app.tasks.warm_staff_chart", "schedule": 600.0},
    # The window report's daily rollup (docs/session-boundaries.md): a day is rolled once finished.
    "roll-up-windows": {"task": "sessions_app.tasks.roll_up_windows", "schedule": 900.0},
}
# Reports (docs/reports.md): seconds between runs of the daily rollup task, which rolls up past days
# and recomputes the ones late changes touched.
REPORTS_ROLLUP_INTERVAL = env.get_int("REPORTS_ROLLUP_INTERVAL", 600, minimum=60)
CELERY_BEAT_SCHEDULE["refresh-report-rollups"] = {
    "task": "sessions_app.tasks.refresh_report_rollups",
    "schedule": float(REPORTS_ROLLUP_INTERVAL),
}
# Today's figures: the summary reads today's provisional rollup while it is at most
# REPORTS_TODAY_MAX_AGE seconds old (else computes today live and keeps that as long), and a beat
# task recomputes it every REPORTS_TODAY_INTERVAL seconds, which must be shorter.
REPORTS_TODAY_MAX_AGE = env.get_int("REPORTS_TODAY_MAX_AGE", 60, minimum=10)
REPORTS_TODAY_INTERVAL = env.get_int("REPORTS_TODAY_INTERVAL", 30, minimum=5)
if REPORTS_TODAY_INTERVAL >= REPORTS_TODAY_MAX_AGE:
    raise ImproperlyConfigured(
        f"REPORTS_TODAY_INTERVAL ({REPORTS_TODAY_INTERVAL}) must be shorter than REPORTS_TODAY_MAX_AGE "
        f"({REPORTS_TODAY_MAX_AGE}), or today's rollup is too old to read before it is recomputed"
    )
CELERY_BEAT_SCHEDULE["refresh-report-today"] = {
    "task": "sessions_app.tasks.refresh_report_today",
    "schedule": float(REPORTS_TODAY_INTERVAL),
}
# Schedulers in any number (docs/scaling.md): with Redis, celery-redbeat keeps the schedule in Redis
# and only the beat holding its lock sends. The leader renews the lock every tick (at most
# BEAT_MAX_INTERVAL apart); the others try to take it as often. A leader killed with -9 is replaced
# within BEAT_LOCK_TIMEOUT + BEAT_MAX_INTERVAL seconds (20 + 5 by default: within 30 s). Without
# Redis, the embedded worker's own beat and its schedule file (one machine, one beat).
BEAT_MAX_INTERVAL = env.get_int("BEAT_MAX_INTERVAL", 5, minimum=1, maximum=60)
BEAT_LOCK_TIMEOUT = env.get_int("BEAT_LOCK_TIMEOUT", 20, minimum=2, maximum=600)
if BEAT_LOCK_TIMEOUT <= BEAT_MAX_INTERVAL:
    raise ImproperlyConfigured(
        f"BEAT_LOCK_TIMEOUT ({BEAT_LOCK_TIMEOUT}s) must be longer than BEAT_MAX_INTERVAL "
        f"({BEAT_MAX_INTERVAL}s): the leader renews its lock once per tick"
    )
if REDIS_URL:
    CELERY_BEAT_SCHEDULER = "config.beat.LeaderScheduler"  # redbeat, outliving Redis restarts
    CELERY_BEAT_MAX_LOOP_INTERVAL = BEAT_MAX_INTERVAL  # Celery's name: beat_max_loop_interval
    CELERY_REDBEAT_REDIS_URL = REDIS_URL
    CELERY_REDBEAT_LOCK_TIMEOUT = BEAT_LOCK_TIMEOUT
    # Several deployments on one Redis database keep their schedules and locks apart.
    CELERY_REDBEAT_KEY_PREFIX = env.get_str("BEAT_KEY_PREFIX", "redbeat:")

# --- Agent ----------------------------------------------------------------------------------------
AGENT_BACKEND = env.get_str("AGENT_BACKEND", "builtin")
if AGENT_BACKEND not in {"builtin", "openai"}:
    raise ImproperlyConfigured(f"AGENT_BACKEND must be builtin or openai, not {AGENT_BACKEND!r}")
AGENT_URL = env.get_str("AGENT_URL", "https://api.openai.com/v1")
AGENT_API_KEY = env.get_str("AGENT_API_KEY")
AGENT_MODEL = env.get_str("AGENT_MODEL", "gpt-4o-mini")
AGENT_TIMEOUT = env.get_int("AGENT_TIMEOUT", 20, minimum=1, maximum=300)
AGENT_SYSTEM_PROMPT = env.get_str(
    "AGENT_SYSTEM_PROMPT", "You answer customers' messages briefly and helpfully on behalf of the business."
)
if AGENT_BACKEND == "openai" and not AGENT_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"AGENT_URL must be an http(s) URL, not {AGENT_URL!r}")
# How long the voice webhook waits for the reply to the turn it just stored before it moves on.
VOICE_REPLY_WAIT = env.get_int("VOICE_REPLY_WAIT_MS", 4000, minimum=0, maximum=10000) / 1000

# --- Outbound delivery (Twilio REST) --------------------------------------------------------------
# Only for a local stand-in of Twilio's API in tests and demos; production leaves it unset.
TWILIO_API_BASE_URL = env.get_origin("TWILIO_API_BASE_URL")
TWILIO_TIMEOUT = env.get_int("TWILIO_TIMEOUT", 15, minimum=1, maximum=120)
# Stream agent answers (backends that can) to sockets piece by piece as they are generated.
AGENT_STREAM = env.get_bool("AGENT_STREAM", default=True)

# --- REST API (see docs/api.md) -------------------------------------------------------------------
INSTALLED_APPS += ["django_filters", "rest_framework_simplejwt", "drf_spectacular", "drf_spectacular_sidecar"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "sessions_app.api.authentication.ApiKeyAuthentication",
        "sessions_app.api.authentication.UserJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["sessions_app.api.throttling.FailedAuthThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "sessions_app.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "sessions_app.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conversation sessions API",
    "DESCRIPTION": "The native API (/api/v1/) and the seed surfaces (/webhook/, /agent/api/, "
    "/workspace/api/, /characters/api/). Errors: see docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Error answers and nullable responses: sessions_app.api.schema.ApiSchema (DEFAULT_SCHEMA_CLASS).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sessions_app.api.schema.add_links",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "sessions_app.models.SessionStatus",
        "ChannelKindEnum": "sessions_app.models.ChannelKind",
        "ChatChannelKindEnum": [("api", "API"), ("web", "Web")],
        "Status001Enum": ["active", "closed", "resolved", "abandoned"],
        "Status002Enum": ["active", "completed", "abandoned", "archived"],
    },
}
SIMPLE_JWT = {"AUTH_HEADER_TYPES": ("Bearer",), "UPDATE_LAST_LOGIN": False}

# Seconds an endpoint that answers with the agent's reply waits for it before answering "pending".
AGENT_REPLY_TIMEOUT = env.get_int("AGENT_REPLY_TIMEOUT", 10, minimum=0)
# Failed authentications from one address within the window before it gets 429 for the window.
AUTH_FAILURE_LIMIT = env.get_int("AUTH_FAILURE_LIMIT", 20, minimum=1)
AUTH_FAILURE_WINDOW = env.get_int("AUTH_FAILURE_WINDOW", 300, minimum=1)
# Seed 000's webhook (HTTP Basic); unset: the webhook answers 404.
SESSIONS_WEBHOOK_USERNAME = env.get_str("SESSIONS_WEBHOOK_USERNAME")
SESSIONS_WEBHOOK_PASSWORD = env.get_str("SESSIONS_WEBHOOK_PASSWORD")

# Browser clients of the seed surfaces on other origins (their JavaScript sends Authorization, so
# the browser asks first with a preflight). Only the API paths, only the listed origins.
INSTALLED_APPS += ["corsheaders"]
MIDDLEWARE.insert(0, "corsheaders.middleware.CorsMiddleware")
CORS_ALLOWED_ORIGINS = env.get_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/(api|agent/api|workspace/api|characters/api|webhook)/.*$"

# --- Event webhooks to subscribers (docs/event-webhooks.md) -----------------------------------------
# Seconds before each retry of a failed delivery (Standard Webhooks' suggestion), each with up to
# 10 % jitter; after the last one the delivery is given up.
EVENT_RETRY_SCHEDULE = env.get_int_list(
    "EVENT_RETRY_SCHEDULE", [5, 300, 1800, 7200, 18000, 36000, 36000], minimum=0
)
# Seconds delivery attempts (and finished events) are kept in the log.
EVENT_LOG_RETENTION = env.get_int("EVENT_LOG_RETENTION", 30 * 86400, minimum=60)
# Local setups and tests only: let endpoints resolve to loopback and private addresses.
EVENT_WEBHOOKS_ALLOW_PRIVATE = env.get_bool("EVENT_WEBHOOKS_ALLOW_PRIVATE", default=False)
# How often overdue deliveries (a lost task, a retry that is due, a worker that died) are re-queued.
EVENT_RECOVERY_INTERVAL = env.get_int("EVENT_RECOVERY_INTERVAL", 30, minimum=1)
# The Celery queue deliveries go to: the default one, or one of their own served by
# `celery -A config worker -Q events` (deliveries and replies then never wait for each other).
EVENT_DELIVERY_QUEUE = env.get_str("EVENT_DELIVERY_QUEUE", "celery")
CELERY_TASK_ROUTES = {"sessions_app.tasks.deliver_events": {"queue": EVENT_DELIVERY_QUEUE}}
CELERY_BEAT_SCHEDULE["recover-event-deliveries"] = {
    "task": "sessions_app.tasks.recover_event_deliveries",
    "schedule": float(EVENT_RECOVERY_INTERVAL),
}
CELERY_BEAT_SCHEDULE["purge-event-log"] = {"task": "sessions_app.tasks.purge_event_log", "schedule": 3600.0}
