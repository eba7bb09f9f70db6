"""X-Twilio-Signature checking with the SDK's RequestValidator.

The signed URL is the one Twilio called. Behind a proxy or load balancer the request we see has
another scheme, host or port, so when PUBLIC_BASE_URL is set the URL is rebuilt from it plus the
request's path and query. The check uses only the account's auth token and that URL, never the
number the message was sent To, so a Messaging Service posting for many numbers validates too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    compare,
    get_signature_algorithm,
)

log = logging.getLogger(__name__)


_KNOWN_ALGORITHMS = frozenset({HMAC_SHA1, HMAC_SHA256})


def _meta_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


_SIGNATURE_META = _meta_key(SIGNATURE_HEADER)
_SIGNATURE_SETTINGS_META = _meta_key(SIGNATURE_SETTINGS_HEADER)


@functools.lru_cache(maxsize=4)
def _validator(auth_token: str) -> RequestValidator:
    return RequestValidator(auth_token)


def signed_url(request: HttpRequest) -> str:
    public_base_url: str = settings.PUBLIC_BASE_URL
    if public_base_url:
        return public_base_url + request.get_full_path()
    return request.build_absolute_uri()


def has_valid_signature(request: HttpRequest) -> bool:
    # From META, as WSGI gives it: `request.headers` would first build a mapping of every header.
    signature = request.META.get(_SIGNATURE_META, "")
    if not signature:
        log.warning("Rejected %s: no %s header", request.path, SIGNATURE_HEADER)
        return False
    if not settings.TWILIO_AUTH_TOKEN:
        log.error("Rejected %s: TWILIO_AUTH_TOKEN is not set, so no signature can be checked", request.path)
        return False
    validator = _validator(settings.TWILIO_AUTH_TOKEN)
    algorithm = get_signature_algorithm(request.META.get(_SIGNATURE_SETTINGS_META, ""))
    url = signed_url(request)
    # The SDK's `validate` always computes two signatures, of the URL with and without its port,
    # because Twilio signs the URL as it was configured, either way. The URL as we have it is one
    # of the two, so one signature settles nearly every genuine request; only a mismatch pays for
    # the SDK's full check (which also covers an algorithm it does not know).
    if algorithm in _KNOWN_ALGORITHMS and compare(
        validator.compute_signature(url, request.POST, algorithm), signature
    ):
        return True
    if validator.validate(url, request.POST, signature, algorithm):
        return True
    log.warning("Rejected %s: the signature does not match (checked against the public URL)", request.path)
    return False


def twilio_signature_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not has_valid_signature(request):
            return HttpResponse(
                "Invalid or missing Twilio signature\n", status=403, content_type="text/plain"
            )
        return view(request, *args, **kwargs)

    return wrapper
