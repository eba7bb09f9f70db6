"""Signing Twilio webhooks the way Twilio does, for tests."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client
from twilio.request_validator import RequestValidator

SMS_URL = "/webhooks/twilio/sms/"
WHATSAPP_URL = "/webhooks/twilio/whatsapp/"
VOICE_URL = "/webhooks/twilio/voice/"
GATHER_URL = "/webhooks/twilio/voice/gather/"
OUR_NUMBER = "+15005550006"

_counter = 0


def new_sid(prefix: str = "SM") -> str:
    global _counter
    _counter += 1
    return f"{prefix}{_counter:032x}"


def sign(url: str, params: dict[str, str], token: str | None = None) -> str:
    return RequestValidator(token or settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)


def post_signed(
    client: Client, path: str, params: dict[str, str], *, signed_as: str | None = None, **extra: Any
) -> Any:
    """POST `params` to `path`, signed for the URL Twilio would have called (`signed_as`)."""
    url = signed_as or f"http://testserver{path}"
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sign(url, params), **extra)


def sms_params(from_phone: str = "+15551234567", body: str = "Hello", **overrides: str) -> dict[str, str]:
    params = {
        "MessageSid": new_sid("SM"),
        "AccountSid": "AC00000000000000000000000000000000",
        "From": from_phone,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }
    params.update(overrides)
    return params


def send_sms(client: Client, from_phone: str = "+15551234567", body: str = "Hello", **overrides: str) -> Any:
    return post_signed(client, SMS_URL, sms_params(from_phone, body, **overrides))


def send_whatsapp(
    client: Client, from_phone: str = "+15551234567", body: str = "Hello", **overrides: str
) -> Any:
    params = sms_params(f"whatsapp:{from_phone}", body, To=f"whatsapp:{OUR_NUMBER}", **overrides)
    return post_signed(client, WHATSAPP_URL, params)
