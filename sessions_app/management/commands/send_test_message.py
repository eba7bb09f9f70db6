"""Post a correctly signed Twilio webhook to a running server, so anyone can try it without Twilio."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from twilio.request_validator import RequestValidator

PATHS = {
    "sms": "/webhooks/twilio/sms/",
    "whatsapp": "/webhooks/twilio/whatsapp/",
    "voice": "/webhooks/twilio/voice/gather/",
}


def signed_post(url: str, params: dict[str, str], auth_token: str, timeout: float = 10) -> tuple[int, str]:
    signature = RequestValidator(auth_token).compute_signature(url, params)
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own server
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Command(BaseCommand):
    help = "Post a signed Twilio webhook (SMS, WhatsApp or a voice turn) to a running server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", choices=sorted(PATHS), default="sms")
        parser.add_argument("--from", dest="from_number", required=True, help="The sender, e.g. +15551234567")
        parser.add_argument("--to", default="+15005550006", help="Our Twilio number the message is sent To")
        parser.add_argument("--body", default="Hello", help="Message text (the caller's words for voice)")
        parser.add_argument(
            "--url",
            default="",
            help="The server's origin, e.g. http://127.0.0.1:8000 (default: PUBLIC_BASE_URL or that)",
        )
        parser.add_argument("--sid", default="", help="MessageSid or CallSid to use (default: a new one)")
        parser.add_argument("--turn", type=int, default=1, help="Voice turn number")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.TWILIO_AUTH_TOKEN:
            raise CommandError("TWILIO_AUTH_TOKEN is not set: it is what the server checks signatures with")
        origin = (options["url"] or settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000").rstrip("/")
        channel = options["channel"]
        url = origin + PATHS[channel]
        prefix = "whatsapp:" if channel == "whatsapp" else ""
        params = {
            "From": prefix + options["from_number"],
            "To": prefix + options["to"],
            "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
        }
        if channel == "voice":
            url += f"?turn={options['turn']}"
            params |= {
                "CallSid": options["sid"] or "CA" + secrets.token_hex(16),
                "SpeechResult": options["body"],
            }
        else:
            params |= {
                "MessageSid": options["sid"] or "SM" + secrets.token_hex(16),
                "Body": options["body"],
                "NumMedia": "0",
            }
        status, body = signed_post(url, params, settings.TWILIO_AUTH_TOKEN)
        self.stdout.write(f"POST {url} -> {status}\n{body}")
        if status >= 400:
            raise CommandError(f"the server answered {status}")
