"""`manage.py send_test_message` against a running server: what the README tells people to try."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from sessions_app.models import ChannelKind, Direction, Message, Session
from tests.servers import suite_database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent


def send_test_message(*args: str, auth_token: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would, in its own process, so its exit status is the real one."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "TWILIO_ACCOUNT_SID": settings.TWILIO_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": auth_token or settings.TWILIO_AUTH_TOKEN,
        "DATA_DIR": str(Path(settings.DATA_DIR)),
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "DATABASE_URL": suite_database_url(),
    }
    return subprocess.run(
        [sys.executable, "manage.py", "send_test_message", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("channel", "kind", "path"),
    [
        ("sms", ChannelKind.SMS, "/webhooks/twilio/sms/"),
        ("whatsapp", ChannelKind.WHATSAPP, "/webhooks/twilio/whatsapp/"),
        ("voice", ChannelKind.VOICE, "/webhooks/twilio/voice/gather/?turn=1"),
    ],
)
def test_it_posts_a_signed_webhook_that_the_server_stores(live_server, channel, kind, path):
    result = send_test_message(
        "--channel",
        channel,
        "--from",
        "+15551234567",
        "--body",
        f"Hello by {channel}",
        "--url",
        live_server.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"POST {live_server.url}{path} -> 200\n")
    assert "<Response" in result.stdout  # the TwiML answer is shown
    message = Message.objects.get(direction=Direction.INBOUND)
    assert message.content == f"Hello by {channel}"
    assert message.session.channel_kind == kind
    assert message.session.contact.phone == "+15551234567"


def test_a_redelivery_with_the_same_sid_is_stored_once(live_server):
    for _ in range(2):
        result = send_test_message(
            "--from", "+15551234567", "--sid", "SM" + "1" * 32, "--url", live_server.url
        )
        assert result.returncode == 0, result.stderr
    assert Message.objects.filter(direction=Direction.INBOUND).count() == 1
    assert Session.objects.count() == 1


def test_it_fails_with_the_servers_answer_when_the_signature_is_refused(live_server):
    result = send_test_message("--from", "+15551234567", "--url", live_server.url, auth_token="not-the-token")
    assert result.returncode == 1
    assert "-> 403" in result.stdout
    assert "the server answered 403" in result.stderr
    assert not Message.objects.exists()
