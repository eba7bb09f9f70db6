"""Reads of lists and reports from a read replica (`DATABASE_REPLICA_URL`), and nothing else.

The replica lags the primary by its replication delay, so only what can show a second-old state
goes there: GET requests to the views in `settings.DATABASE_REPLICA_VIEWS` (the staff list and its
chart, the API's list endpoints), and within them only the domain's tables (`REPLICA_MODELS`; a
login, a session cookie or an API key is always checked on the primary, where it was just
written). Everything else reads the primary: other requests, tasks, management commands.

Read-after-write within a request: once a request has written to one of those tables (through the
ORM), its reads go to the primary for the rest of it. The state is per request, in a context variable the
middleware sets at the start of each request, so threads and the ASGI handler's context copies each
see their own request's.

Without a replica (`DATABASE_REPLICA_ALIAS` empty) the router answers None everywhere: Django's
default routing, the primary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

# app_label.model_name of the tables lists and reports read.
REPLICA_MODELS = frozenset(
    {
        "sessions_app.session",
        "sessions_app.message",
        "sessions_app.contact",
        "sessions_app.channel",
        "sessions_app.statuschange",
    }
)
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass
class RequestReads:
    replica_allowed: bool = False
    wrote: bool = False


_current: ContextVar[RequestReads | None] = ContextVar("replica_request_reads", default=None)


@contextlib.contextmanager
def request_reads(*, replica_allowed: bool) -> Iterator[RequestReads]:
    """The routing state of one request (the middleware's; tests use it directly)."""
    state = RequestReads(replica_allowed=replica_allowed)
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


class ReplicaRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        alias = settings.DATABASE_REPLICA_ALIAS
        state = _current.get()
        if not alias or state is None or not state.replica_allowed or state.wrote:
            return None
        if hints.get("instance") is not None:
            return None  # Django then reads an object's related rows where the object came from
        return alias if model._meta.label_lower in REPLICA_MODELS else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        # Only a write to the tables the replica serves changes what the rest of the request must
        # read back: an API key's "last used" stamp (once a minute) does not.
        state = _current.get()
        if state is not None and model._meta.label_lower in REPLICA_MODELS:
            state.wrote = True
        return None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        alias = settings.DATABASE_REPLICA_ALIAS
        # As in Django's primary/replica example (docs, "Multiple databases"): the same data.
        if alias and {obj1._state.db, obj2._state.db} <= {"default", alias}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The replica follows the primary's schema through replication.
        return False if db == "replica" else None


class ReplicaReadsMiddleware:
    """Marks the request's reads for the replica when it is a GET of a list or report view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with request_reads(replica_allowed=False):
            return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        state = _current.get()
        match = request.resolver_match
        if state is not None and match is not None and request.method in SAFE_METHODS:
            state.replica_allowed = match.view_name in settings.DATABASE_REPLICA_VIEWS
