import pytest
from django.db import OperationalError, connection

from sessions_app.models import Contact, Message, Session
from tests.fixtures import twilio_payload
from tests.twilio_helpers import SMS_URL, post_signed, send_sms, sms_params

pytestmark = pytest.mark.django_db


def test_it_stores_the_message_and_answers_empty_twiml(client):
    response = send_sms(client, "+15551234567", "Hello")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode().endswith("<Response/>")
    message = Message.objects.get()
    assert message.content == "Hello"
    assert message.direction == "inbound" and message.role == "contact"
    assert message.provider == "twilio" and message.external_id.startswith("SM")
    assert message.session.contact.phone == "+15551234567"


def test_it_stores_media_from_a_real_payload(client):
    response = post_signed(client, SMS_URL, twilio_payload("sms_with_media"))
    assert response.status_code == 200
    message = Message.objects.get()
    assert message.content == "Here are the photos"
    assert [item["content_type"] for item in message.media] == ["image/jpeg", "application/pdf"]
    assert message.media[0]["url"].endswith("/Media/ME0000000000000000000000000000000a")
    assert message.metadata["messagingServiceSid"] == "MG9752274e9e519418a7406176694466fa"


def test_a_redelivered_message_sid_is_stored_once_and_gets_the_same_answer(client):
    params = sms_params("+15551234567", "Hello")
    first = post_signed(client, SMS_URL, params)
    second = post_signed(client, SMS_URL, params)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert Message.objects.count() == 1
    assert Session.objects.get().message_count == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"From": ""}, "From"),
        ({"MessageSid": ""}, "MessageSid"),
        ({"From": "not a number"}, "From"),
        ({"From": "+12"}, "From"),
        ({"To": ""}, "To"),
        ({"Body": "x" * 1601}, "Body"),
        ({"NumMedia": "two"}, "NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0"),
        ({"NumMedia": "1", "MediaUrl0": "ftp://example.com/a.png"}, "MediaUrl0"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(client, change, field):
    params = sms_params()
    params.update(change)
    params = {key: value for key, value in params.items() if value != ""}
    response = post_signed(client, SMS_URL, params)
    assert response.status_code == 400
    assert response.content.decode().startswith(f"{field}:")
    assert not Message.objects.exists()
    assert not Session.objects.exists()
    assert not Contact.objects.exists()


def test_a_body_of_exactly_1600_characters_is_accepted(client):
    assert send_sms(client, body="x" * 1600).status_code == 200


def test_get_is_not_allowed(client):
    assert client.get(SMS_URL).status_code == 405


def test_a_database_outage_answers_503_and_writes_nothing(client):
    def fail_inserts(execute, sql, params, many, context):
        # The ORM version's message insert, or PostgreSQL's one call that does it all.
        if (
            sql.lstrip()
            .upper()
            .startswith(('INSERT INTO "SESSIONS_APP_MESSAGE"', "SELECT * FROM SESSIONS_APP_RECORD"))
        ):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_inserts):
        response = send_sms(client, "+15551234567", "Hello")
    assert response.status_code == 503
    assert response["Retry-After"]
    assert not Session.objects.exists()
    assert not Contact.objects.exists()
    # Twilio's retry after the outage is stored normally.
    assert send_sms(client, "+15551234567", "Hello").status_code == 200
    assert Message.objects.count() == 1
