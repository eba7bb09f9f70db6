"""The WSGI application (gunicorn's) takes every request, webhooks included, through Django's own
handler and the one middleware list."""

from __future__ import annotations

import io
import sys
import urllib.parse

import pytest

from config.wsgi import application
from sessions_app.models import Message
from tests.in_process import connection_kept_open
from tests.twilio_helpers import SMS_URL, sign, sms_params

pytestmark = pytest.mark.django_db


Answer = tuple[str, dict[str, list[str]], bytes]  # status line, headers by lowercase name, body


def call(method: str, path: str, body: bytes = b"", **headers: str) -> Answer:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    started: list[tuple[str, list[tuple[str, str]]]] = []
    with connection_kept_open():
        chunks = application(environ, lambda status, headers: started.append((status, headers)))
        try:
            content = b"".join(chunks)
        finally:
            chunks.close()  # type: ignore[attr-defined]
    status, header_list = started[0]
    found: dict[str, list[str]] = {}
    for name, value in header_list:
        found.setdefault(name.lower(), []).append(value)
    return status, found, content


def post_sms(signature: str | None = None, signed_for: str = "http://testserver") -> Answer:
    params = sms_params("+15551234567", "Hello")
    body = urllib.parse.urlencode(params).encode()
    return call("POST", SMS_URL, body, X_TWILIO_SIGNATURE=signature or sign(signed_for + SMS_URL, params))


def test_a_signed_sms_through_the_wsgi_application_is_stored_and_answered():
    status, headers, content = post_sms()
    assert status.startswith("200") and content.decode().endswith("<Response/>")
    assert Message.objects.get().content == "Hello"
    # The same middleware as every other path: the security and frame headers, no session cookie
    # (nothing stored one).
    assert headers["x-content-type-options"] == ["nosniff"]
    assert headers["x-frame-options"] == ["DENY"]
    assert "set-cookie" not in headers


def test_a_webhook_with_a_bad_signature_is_refused_through_the_wsgi_application():
    status, _, _ = post_sms(signature="forged")
    assert status.startswith("403")
    assert not Message.objects.exists()


def test_a_webhook_for_a_host_not_allowed_is_refused_through_the_wsgi_application(settings):
    # Signed for the public URL, so the signature check itself never reads the Host header.
    settings.ALLOWED_HOSTS = ["sessions.example.com"]
    settings.PUBLIC_BASE_URL = "https://sessions.example.com"
    status, _, _ = post_sms(signed_for="https://sessions.example.com")
    assert status.startswith("400")
    assert not Message.objects.exists()


def test_other_paths_keep_the_whole_middleware_stack():
    status, headers, _ = call("GET", "/accounts/login/")
    assert status.startswith("200")
    assert headers["x-frame-options"] == ["DENY"]
    assert any(cookie.strip().startswith("csrftoken=") for cookie in headers["set-cookie"])


def test_a_form_with_too_many_fields_is_a_400_through_the_wsgi_application(settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    params = {**sms_params("+15551234567", "Hello"), **{f"Extra{n}": "x" for n in range(5)}}
    body = urllib.parse.urlencode(params).encode()
    status, _, _ = call("POST", SMS_URL, body, X_TWILIO_SIGNATURE=sign("http://testserver" + SMS_URL, params))
    assert status.startswith("400")
    assert not Message.objects.exists()


def test_an_unknown_webhook_path_is_a_404():
    status, _, _ = call("POST", "/webhooks/twilio/nothing-here/")
    assert status.startswith("404")
