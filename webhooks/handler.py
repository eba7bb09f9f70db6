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

import functools
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.http import HttpRequest, QueryDict
from django.urls import ResolverMatch, get_resolver
from django.utils.datastructures import MultiValueDict
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


FORM = "application/x-www-form-urlencoded"


def form_data(body: bytes) -> QueryDict:
    """The QueryDict Django builds from a form body, built in one pass.

    Django's constructor appends field by field through several layers of checks (about 5 µs a
    field; a Twilio webhook has up to twenty). Same parsing, same limits and errors, same result.
    """
    try:
        text = body.decode()
    except UnicodeDecodeError:
        text = body.decode("iso-8859-1")  # as QueryDict does for misbehaving clients
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS)
    except ValueError as exc:
        raise TooManyFieldsSent(
            "The number of GET/POST parameters exceeded settings.DATA_UPLOAD_MAX_NUMBER_FIELDS."
        ) from exc
    lists: dict[str, list[str]] = {}
    for key, value in pairs:
        lists.setdefault(key, []).append(value)
    form = QueryDict(mutable=True, encoding="utf-8")  # as Django reads a form body, whatever DEFAULT_CHARSET
    dict.update(form, lists)  # a MultiValueDict keeps each key's values as a list in the dict itself
    form._mutable = False
    return form


class WebhookRequest(WSGIRequest):
    def _load_post_and_files(self) -> None:
        encoding: str | None = getattr(self, "_encoding", None)
        if (
            self.method == "POST"
            and self.content_type == FORM
            and (encoding is None or encoding.lower() == "utf-8")
            and not (getattr(self, "_read_started", False) and not hasattr(self, "_body"))
        ):
            files: MultiValueDict[str, Any] = MultiValueDict()
            self._post, self._files = form_data(self.body), files
            return
        super()._load_post_and_files()  # type: ignore[misc]


@functools.lru_cache(maxsize=32)
def _resolved(urlconf: str, path: str) -> ResolverMatch:
    # A path resolves to the same match for as long as the URL configuration (the key) is the same.
    # Bounded, and failures raise and are not kept, so unknown paths cannot fill it.
    return get_resolver(urlconf).resolve(path)


class WebhookHandler(WSGIHandler):
    request_class = WebhookRequest

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """Django's resolution (about 30 µs through the whole URL configuration), remembered per path."""
        if hasattr(request, "urlconf"):
            return super().resolve_request(request)
        match = _resolved(settings.ROOT_URLCONF, request.path_info)
        request.resolver_match = match
        return match

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
