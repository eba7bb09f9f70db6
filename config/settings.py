"""Settings, read once from the environment and validated (see README "Settings")."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import Env

env = Env()
log = logging.getLogger("config")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.get_str("DATA_DIR", str(BASE_DIR / "data"))).resolve()

DEBUG = env.get_bool("DEBUG", default=False)


def _local_secret(filename: str, purpose: str) -> str:
    """A secret generated once into the data folder, for local runs only (owner-only permissions)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / filename
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
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
# Default: a SQLite file in the data folder, in WAL mode with IMMEDIATE transactions, so that
# concurrent writers queue on the database lock instead of failing halfway through a transaction.
DATABASE_URL = env.get_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL I understand: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    if _db["NAME"] != ":memory:":
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _db["CONN_MAX_AGE"] = 0
    _db["CONN_HEALTH_CHECKS"] = False
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _db.setdefault("TEST", {})["NAME"] = str(DATA_DIR / "test-db.sqlite3")
elif _db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must be a postgres:// or sqlite:// URL")
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (optional) -----------------------------------------------------------------------------
REDIS_URL = env.get_str("REDIS_URL")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL, not {REDIS_URL!r}")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

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
    },
}

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
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
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
