import pytest
from django.conf import settings
from twilio.request_validator import RequestValidator

from sessions_app.models import Message
from tests.twilio_helpers import GATHER_URL, SMS_URL, VOICE_URL, post_signed, sign, sms_params

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", [SMS_URL, "/webhooks/twilio/whatsapp/", VOICE_URL, f"{GATHER_URL}?turn=1"])
def test_it_rejects_a_missing_signature(client, path):
    response = client.post(path, sms_params(CallSid="CA1", SpeechResult="hi"))
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_it_rejects_a_wrong_signature(client):
    params = sms_params()
    response = client.post(
        SMS_URL, params, HTTP_X_TWILIO_SIGNATURE=sign("http://testserver" + SMS_URL, params, "other-token")
    )
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_it_rejects_a_signature_for_other_parameters(client):
    params = sms_params(body="Hello")
    signature = sign("http://testserver" + SMS_URL, params)
    response = client.post(SMS_URL, {**params, "Body": "tampered"}, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


def test_it_accepts_a_right_signature(client):
    assert post_signed(client, SMS_URL, sms_params()).status_code == 200
    assert Message.objects.count() == 1


def test_it_validates_against_the_public_url_behind_a_proxy(client, settings):
    settings.PUBLIC_BASE_URL = "https://sessions.example.com"
    params = sms_params()
    # Twilio signed the public https URL; the app sees plain http on an internal host.
    response = post_signed(client, SMS_URL, params, signed_as="https://sessions.example.com" + SMS_URL)
    assert response.status_code == 200
    wrong = post_signed(client, SMS_URL, sms_params(), signed_as="http://testserver" + SMS_URL)
    assert wrong.status_code == 403


def test_the_query_string_is_part_of_the_signed_url(client):
    params = {"CallSid": "CA1", "From": "+14155550199", "To": "+15005550006", "SpeechResult": "hi"}
    signature = sign(f"http://testserver{GATHER_URL}?turn=1", params)
    response = client.post(f"{GATHER_URL}?turn=2", params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


def test_a_messaging_service_posting_for_many_numbers_validates(client):
    # One Messaging Service, one webhook URL, many sender numbers: every one must validate.
    for index, number in enumerate(["+15005550006", "+15005550007", "+15005550008"]):
        params = sms_params(To=number, MessagingServiceSid="MG" + "1" * 32, MessageSid=f"SM{index:032x}")
        assert post_signed(client, SMS_URL, params).status_code == 200
    assert Message.objects.count() == 3


def test_without_an_auth_token_every_request_is_refused(client, settings):
    params = sms_params()
    signature = sign("http://testserver" + SMS_URL, params)
    settings.TWILIO_AUTH_TOKEN = ""
    response = client.post(SMS_URL, params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("public_base_url", "twilio_signed"),
    [
        ("https://sessions.example.com", "https://sessions.example.com:443"),
        ("https://sessions.example.com:443", "https://sessions.example.com"),
        ("http://sessions.example.com:8080", "http://sessions.example.com"),
    ],
)
def test_it_accepts_the_url_signed_with_or_without_its_port(client, settings, public_base_url, twilio_signed):
    # Twilio signs the URL as configured, port or not; the SDK accepts either form and so must we.
    settings.PUBLIC_BASE_URL = public_base_url
    response = post_signed(client, SMS_URL, sms_params(), signed_as=twilio_signed + SMS_URL)
    assert response.status_code == 200


@pytest.mark.parametrize("algorithm", ["HMAC_SHA1", "HMAC_SHA256", "hmac_sha256"])
def test_it_checks_the_algorithm_twilio_names(client, algorithm):
    params = sms_params()
    url = "http://testserver" + SMS_URL
    right = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params, algorithm)
    wrong = RequestValidator("other-token").compute_signature(url, params, algorithm)
    headers = {"HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS": f"key=k1,algorithm={algorithm}"}
    assert client.post(SMS_URL, params, HTTP_X_TWILIO_SIGNATURE=right, **headers).status_code == 200
    assert client.post(SMS_URL, params, HTTP_X_TWILIO_SIGNATURE=wrong, **headers).status_code == 403
