import json
import logging
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import time_machine
from django.conf import settings
from django.test import Client
from django.utils import timezone

from sessions_app.delivery.outbound import deliver_message, record_outbound_message
from sessions_app.models import DeliveryStatus, Message, Role
from sessions_app.tasks import recover_owed_work
from tests.http_stub import Reply, running_stub
from tests.twilio_api import ACCOUNT, running_twilio
from tests.twilio_helpers import OUR_NUMBER, post_signed, send_sms, send_whatsapp

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent.parent / "fixtures" / "twilio"
SID = "AC00000000000000000000000000000000"
STATUS_URL = "/webhooks/twilio/status/"


def recorded(name: str, status: int) -> Reply:
    return Reply(status=status, body=json.loads((FIXTURES / name).read_text()))


CREATED = recorded("message_create_201.json", 201)
SERVER_ERROR = recorded("message_create_500.json", 500)
BAD_NUMBER = recorded("message_create_400_21211.json", 400)


@pytest.fixture
def twilio_api(settings):
    """Twilio's REST API stood in for by a local server; the SDK is pointed at it, nothing else changes."""
    for stub in running_stub():
        settings.TWILIO_ACCOUNT_SID = SID
        settings.TWILIO_API_BASE_URL = stub.url
        settings.PUBLIC_BASE_URL = "http://testserver"
        settings.TASK_MAX_ATTEMPTS = 3
        settings.TASK_RETRY_BACKOFF = 0
        yield stub


def text_in(client, callbacks, send=send_sms):
    with callbacks(execute=True):
        assert send(client, "+15557654321", "Hello").status_code == 200
    return Message.objects.get(role=Role.AGENT)


def form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def test_an_sms_reply_is_sent_through_twilio_with_a_status_callback(
    client, twilio_api, django_capture_on_commit_callbacks
):
    twilio_api.replies = [CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    assert (reply.delivery_status, reply.external_id, reply.provider) == (
        DeliveryStatus.QUEUED,
        "SM1f0e8ae6ade43cb3c0ce4525424e404f",
        "twilio",
    )
    request = twilio_api.requests[0]
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    sent = form(request)
    assert sent["To"] == "+15557654321"
    assert sent["From"] == "+15005550006"
    assert sent["Body"] == reply.content
    assert sent["StatusCallback"] == "http://testserver/webhooks/twilio/status/"


def test_a_whatsapp_reply_is_sent_to_the_whatsapp_address(
    client, twilio_api, django_capture_on_commit_callbacks
):
    twilio_api.replies = [CREATED]
    text_in(client, django_capture_on_commit_callbacks, send=send_whatsapp)
    sent = form(twilio_api.requests[0])
    assert (sent["To"], sent["From"]) == ("whatsapp:+15557654321", "whatsapp:+15005550006")


def test_a_twilio_5xx_is_retried_and_the_retry_sends(client, twilio_api, django_capture_on_commit_callbacks):
    twilio_api.replies = [SERVER_ERROR, CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    assert len(twilio_api.requests) == 2
    assert reply.delivery_status == DeliveryStatus.QUEUED
    assert reply.delivery_attempts == 2


def test_after_the_last_retry_the_message_is_failed_with_the_reason(
    client, twilio_api, django_capture_on_commit_callbacks, admin_client
):
    twilio_api.default = SERVER_ERROR
    reply = text_in(client, django_capture_on_commit_callbacks)
    assert len(twilio_api.requests) == 3
    assert reply.delivery_status == DeliveryStatus.FAILED
    assert reply.delivery_error.startswith("attempt 3: Twilio error 20500:")
    assert reply.delivery_error.endswith("An internal server error has occurred")
    page = admin_client.get("/admin/sessions_app/message/?problem=delivery")
    assert b"Twilio error 20500" in page.content


def test_a_bad_number_is_not_retried(client, twilio_api, django_capture_on_commit_callbacks):
    twilio_api.default = BAD_NUMBER
    reply = text_in(client, django_capture_on_commit_callbacks)
    assert len(twilio_api.requests) == 1
    assert reply.delivery_status == DeliveryStatus.FAILED
    assert reply.delivery_error.startswith("Twilio error 21211:")
    assert "Invalid 'To' Phone Number" in reply.delivery_error


def test_twilio_unreachable_is_retried(client, twilio_api, settings, django_capture_on_commit_callbacks):
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:18399"  # nothing listens there
    reply = text_in(client, django_capture_on_commit_callbacks)
    assert reply.delivery_status == DeliveryStatus.FAILED
    assert reply.delivery_attempts == 3
    assert "could not reach Twilio" in reply.delivery_error


def test_a_delivery_task_run_twice_sends_once(client, twilio_api, django_capture_on_commit_callbacks):
    twilio_api.replies = [CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    assert deliver_message(reply.pk) == DeliveryStatus.QUEUED
    assert len(twilio_api.requests) == 1


def test_staff_replies_are_sent_too(client, twilio_api, django_capture_on_commit_callbacks):
    twilio_api.replies = [CREATED, CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        record_outbound_message(reply.session, "A person here: how can I help?", role=Role.STAFF)
    assert form(twilio_api.requests[1])["Body"] == "A person here: how can I help?"


def test_without_credentials_sending_is_disabled_with_one_log_line_and_the_reply_is_stored(
    client, settings, caplog, django_capture_on_commit_callbacks
):
    import sessions_app.delivery.outbound as outbound

    settings.TWILIO_ACCOUNT_SID = ""
    outbound._disabled_logged = False
    with caplog.at_level(logging.WARNING, logger="sessions_app.delivery.outbound"):
        for _ in range(2):
            with django_capture_on_commit_callbacks(execute=True):
                send_sms(client, "+15557654321", "Hello")
    replies = Message.objects.filter(role=Role.AGENT)
    assert replies.count() == 2
    assert all(r.delivery_status == DeliveryStatus.PENDING for r in replies)
    assert all("sending is disabled" in r.delivery_error for r in replies)
    lines = [r for r in caplog.records if "sending is disabled" in r.getMessage()]
    assert len(lines) == 1


def status_callback(client: Client, sid: str, status: str, **extra: str):
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": SID, **extra}
    return post_signed(client, STATUS_URL, params, signed_as=f"http://testserver{STATUS_URL}")


def test_status_callbacks_record_sent_delivered_and_never_go_back(
    client, twilio_api, django_capture_on_commit_callbacks
):
    twilio_api.replies = [CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    for status in ["sent", "delivered", "sent"]:
        assert status_callback(client, reply.external_id, status).status_code == 204
    reply.refresh_from_db()
    assert reply.delivery_status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("status", ["failed", "undelivered"])
def test_a_failed_status_callback_records_the_error_code(
    client, twilio_api, django_capture_on_commit_callbacks, status
):
    twilio_api.replies = [CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    status_callback(client, reply.external_id, status, ErrorCode="30003")
    reply.refresh_from_db()
    assert reply.delivery_status == status
    assert reply.delivery_error == f"Twilio reported {status} (error 30003)"


def test_a_status_callback_without_a_valid_signature_is_refused(
    client, twilio_api, django_capture_on_commit_callbacks
):
    twilio_api.replies = [CREATED]
    reply = text_in(client, django_capture_on_commit_callbacks)
    response = client.post(
        STATUS_URL,
        {"MessageSid": reply.external_id, "MessageStatus": "failed"},
        HTTP_X_TWILIO_SIGNATURE="bad",
    )
    assert response.status_code == 403
    reply.refresh_from_db()
    assert reply.delivery_status == DeliveryStatus.QUEUED


def test_a_status_callback_missing_its_status_is_a_400_naming_it(client, settings):
    settings.PUBLIC_BASE_URL = "http://testserver"
    response = status_callback(client, "SM123", "")
    assert response.status_code == 400
    assert b"MessageStatus" in response.content


def test_logs_mask_the_number_twilio_quotes_in_its_error(
    client, twilio_api, caplog, django_capture_on_commit_callbacks
):
    twilio_api.default = Reply(
        status=400, body={"code": 21211, "message": "Invalid 'To' Phone Number: +15557654321", "status": 400}
    )
    with caplog.at_level(logging.INFO):
        reply = text_in(client, django_capture_on_commit_callbacks)
    assert "+15557654321" in reply.delivery_error  # staff see it in admin
    assert "+15557654321" not in caplog.text
    assert "+1555•••4321" in caplog.text


def test_a_send_that_never_reached_a_worker_is_recovered(client, twilio_api, settings):
    twilio_api.replies = [CREATED]
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        send_sms(client, "+15557654321", "Hello")  # on-commit callbacks not run: nothing queued
        inbound = Message.objects.get()
        reply = record_outbound_message(inbound.session, "Hi!", role=Role.AGENT, in_reply_to=inbound)
        clock.shift(120)
        assert recover_owed_work.delay().get()["deliveries"] == 1
        reply.refresh_from_db()
        assert reply.delivery_status == DeliveryStatus.QUEUED
    assert len(twilio_api.requests) == 1


@pytest.fixture
def stateful_twilio(settings):
    """Twilio's Messages API with memory (tests/twilio_api.py): creates get fresh SIDs, lists work."""
    with running_twilio() as api:
        settings.TWILIO_ACCOUNT_SID = ACCOUNT
        settings.TWILIO_API_BASE_URL = api.url
        settings.TASK_RETRY_BACKOFF = 0
        yield api


def lost_mid_send(client, clock) -> Message:
    """A reply whose worker claimed it (`sending`) and stopped: Twilio may or may not have it."""
    send_sms(client, "+15557654321", "Hello")  # on-commit callbacks not run: nothing queued
    inbound = Message.objects.get()
    reply = record_outbound_message(inbound.session, "Hi!", role=Role.AGENT, in_reply_to=inbound)
    Message.objects.filter(pk=reply.pk).update(
        delivery_status=DeliveryStatus.SENDING, delivery_claimed_at=timezone.now(), delivery_attempts=1
    )
    clock.shift(settings.TASK_LEASE + 1)
    return reply


def test_a_send_lost_with_its_worker_after_twilio_took_it_is_adopted_not_sent_again(client, stateful_twilio):
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        reply = lost_mid_send(client, clock)
        # Twilio got the request before the worker died; also an older identical text, already ours.
        earlier = stateful_twilio.create({"To": "+15557654321", "From": OUR_NUMBER, "Body": "Hi!"})
        Message.objects.filter(role=Role.CONTACT).update(provider="twilio", external_id=earlier["sid"])
        clock.shift(1)
        taken = stateful_twilio.create({"To": "+15557654321", "From": OUR_NUMBER, "Body": "Hi!"})
        result = recover_owed_work.delay().get()
    assert (result["lost_deliveries_found"], result["lost_deliveries_resent"]) == (1, 0)
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.external_id) == (DeliveryStatus.QUEUED, taken["sid"])
    assert len(stateful_twilio.created) == 2  # nothing sent again


def test_a_send_lost_with_its_worker_before_twilio_took_it_is_sent_once(client, stateful_twilio):
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        reply = lost_mid_send(client, clock)
        result = recover_owed_work.delay().get()
        again = recover_owed_work.delay().get()
    assert (result["lost_deliveries_found"], result["lost_deliveries_resent"]) == (0, 1)
    assert result["deliveries"] == 1
    assert (again["lost_deliveries_resent"], again["deliveries"]) == (0, 0)
    reply.refresh_from_db()
    assert reply.delivery_status == DeliveryStatus.QUEUED
    assert [record["sid"] for record in stateful_twilio.created] == [reply.external_id]


def test_a_lost_send_waits_while_twilio_cannot_be_asked_and_fails_after_a_day(client, settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:18399"  # nothing listens there
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        reply = lost_mid_send(client, clock)
        recover_owed_work.delay().get()
        reply.refresh_from_db()
        assert reply.delivery_status == DeliveryStatus.SENDING
        clock.shift(24 * 3600)
        recover_owed_work.delay().get()
    reply.refresh_from_db()
    assert reply.delivery_status == DeliveryStatus.FAILED
    assert reply.delivery_error.startswith("Outcome unknown")
