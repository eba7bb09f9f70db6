"""Logs never hold a raw phone number, a message body, a name, a signature, a token or a key."""

import io
import logging

import pytest
from django.core.management import call_command

from sessions_app.privacy.logfilters import MaskPhoneNumbers, mask_phone_numbers
from tests.twilio_helpers import (
    GATHER_URL,
    OUR_NUMBER,
    SMS_URL,
    VOICE_URL,
    new_sid,
    post_signed,
    sign,
    sms_params,
)

pytestmark = pytest.mark.django_db

CALLER = "+15551234567"
SMS_BODY = "My account password is hunter2"
WHATSAPP_BODY = "Sending my address: 12 Rue Secrète"
PROFILE_NAME = "Zoë Confidentielle"
SPEECH = "my date of birth is the fourth of July"
BAD_SIGNATURE = "bm90LWEtcmVhbC1zaWduYXR1cmUtYXQtYWxs="
# Loggers pinned above DEBUG on purpose (see LOGGING in config/settings.py) keep their level.
PINNED_FOR_PRIVACY = {"twilio"}


@pytest.fixture
def all_logs():
    """Every record any logger emits, at DEBUG, formatted with tracebacks, on the root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    saved = {
        name: lg.level
        for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    saved_root = root.level
    for name in saved:
        if name.split(".")[0] not in PINNED_FOR_PRIVACY:
            logging.getLogger(name).setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_a_full_inbound_flow_logs_no_number_body_name_signature_or_secret(
    client, all_logs, django_capture_on_commit_callbacks, settings
):
    settings.SESSION_PURGE_AFTER = 1
    sent_signatures = []

    def post(path, params):
        sent_signatures.append(sign(f"http://testserver{path}", params))
        return post_signed(client, path, params)

    with django_capture_on_commit_callbacks(execute=True):
        assert post(SMS_URL, sms_params(CALLER, SMS_BODY)).status_code == 200
        whatsapp = sms_params(
            f"whatsapp:{CALLER}", WHATSAPP_BODY, To=f"whatsapp:{OUR_NUMBER}", ProfileName=PROFILE_NAME
        )
        assert post("/webhooks/twilio/whatsapp/", whatsapp).status_code == 200
        call = {"CallSid": new_sid("CA"), "From": CALLER, "To": OUR_NUMBER}
        assert post(VOICE_URL, call).status_code == 200
        assert post(f"{GATHER_URL}?turn=1", {**call, "SpeechResult": SPEECH}).status_code == 200
    # A forged request, and one with a number too long to be one.
    forged = client.post(SMS_URL, sms_params(CALLER, SMS_BODY), HTTP_X_TWILIO_SIGNATURE=BAD_SIGNATURE)
    assert forged.status_code == 403
    assert post(SMS_URL, sms_params(CALLER + "0123456789", SMS_BODY)).status_code == 400
    # The data-protection tools on the same person.
    call_command("export_contact", CALLER, stdout=io.StringIO())
    call_command("erase_contact", CALLER, stdout=io.StringIO())

    logs = all_logs.getvalue()
    assert "Created new SMS session" in logs and "+1555•••4567" in logs  # the capture works
    assert "Rejected /webhooks/twilio/sms/: the signature does not match" in logs
    leaks = [
        CALLER[2:],  # the number in any form (+1…, 1…, national)
        OUR_NUMBER[2:],
        SMS_BODY,
        WHATSAPP_BODY,
        PROFILE_NAME,
        SPEECH,
        BAD_SIGNATURE,
        *sent_signatures,
        settings.TWILIO_AUTH_TOKEN,
        settings.SECRET_KEY,
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    assert [leak for leak in leaks if leak in logs] == []


def test_the_console_handler_masks_numbers_in_any_record_and_traceback():
    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    assert any(isinstance(f, MaskPhoneNumbers) for f in console.filters)
    try:
        raise ValueError("Key (phone)=(+15551234567) already exists")
    except ValueError:
        record = logging.getLogger("somewhere").makeRecord(
            "somewhere",
            logging.ERROR,
            __file__,
            1,
            "texted %s and %s",
            ("+15551234567", "whatsapp:+447700900123"),
            exc_info=__import__("sys").exc_info(),
        )
    assert console.filter(record)
    text = console.format(record)
    assert "5551234567" not in text and "7700900123" not in text
    assert "texted +1555•••4567 and whatsapp:+4477•••0123" in text
    assert "Key (phone)=(+1555•••4567)" in text


def test_masking_leaves_ids_amounts_and_timestamps_alone():
    line = "session 1724567890123 at 2025-01-15T10:00:00+00:00 cost +12.50, call CA0123456789abcdef"
    assert mask_phone_numbers(line) == line
    assert mask_phone_numbers("from +15551234567.") == "from +1555•••4567."


def test_a_malformed_log_call_is_not_turned_into_an_exception_by_the_filter():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "two %s %s", ("one",), None)
    assert MaskPhoneNumbers().filter(record) is True
