"""Per-address throttling of failed authentication (429), kept in the cache (Redis when configured).

Failures are counted by the exception handler when it answers 401; every request from an address
over the limit is refused for the rest of the window, right or wrong credentials, so guessing on
cannot succeed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle


def _address(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a known proxy sets it.
    return request.META.get("REMOTE_ADDR") or "unknown"


def _key(request: HttpRequest) -> str:
    return f"auth-failures:{_address(request)}"


def record_failure(request: HttpRequest) -> None:
    key = _key(request)
    if cache.add(key, 1, timeout=settings.AUTH_FAILURE_WINDOW):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=settings.AUTH_FAILURE_WINDOW)


def is_locked_out(request: HttpRequest) -> bool:
    return int(cache.get(_key(request)) or 0) >= settings.AUTH_FAILURE_LIMIT


def refuse_if_locked_out(request: HttpRequest) -> None:
    if is_locked_out(request):
        raise Throttled(
            wait=settings.AUTH_FAILURE_WINDOW,
            detail="Too many failed authentication attempts from this address.",
        )


class FailedAuthThrottle(BaseThrottle):
    """For views without authentication classes (the token endpoint): the same lockout."""

    def allow_request(self, request: Any, view: Any) -> bool:
        return not is_locked_out(request)

    def wait(self) -> float | None:
        return float(settings.AUTH_FAILURE_WINDOW)
