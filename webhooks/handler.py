"""A WSGI handler for the provider webhooks, with only the middleware a signed webhook uses.

Twilio's requests carry no cookies, no user and no CSRF token (the signature stands in for all
three), so sessions, authentication, CSRF, messages, CORS, static files and frame options would do
nothing for them but cost time on every inbound message, the hottest path of the product
(docs/ingest.md). `config/wsgi.py` routes `/webhooks/` here; every other path, and the test client,
goes through `settings.MIDDLEWARE` as usual. The URL configuration, views, signals
(`request_started`/`request_finished`, which recycle database connections) and error handling are
Django's own.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils.module_loading import import_string

WEBHOOK_PATH_PREFIX = "/webhooks/"

# Kept: HTTPS redirect and the security headers apply to every response the product sends, and
# CommonMiddleware checks the Host header against ALLOWED_HOSTS (and refuses disallowed user agents)
# as on every other path.
WEBHOOK_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
)

_HOOKS_NOT_SUPPORTED = ("process_view", "process_template_response", "process_exception")


class WebhookHandler(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(WEBHOOK_MIDDLEWARE):
            middleware = import_string(path)(handler)
            # Only request/response middleware: this chain does not run the other hooks.
            unsupported = [hook for hook in _HOOKS_NOT_SUPPORTED if hasattr(middleware, hook)]
            if unsupported:
                raise TypeError(f"{path} needs {', '.join(unsupported)}, which WebhookHandler does not run")
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler
