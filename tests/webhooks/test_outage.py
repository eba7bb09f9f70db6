"""A database that cannot be reached: every webhook answers 503 with Retry-After, so Twilio retries,
and the retry after the outage is stored as if it were the first delivery.

The outage is real, not simulated: the connection's settings point at a PostgreSQL port nothing
listens on (connection refused) or, on SQLite, at a file that cannot be opened.
"""

from collections.abc import Callable, Iterator

import pytest
from django.db import connection

from sessions_app.models import Message, Session
from tests.servers import free_port
from tests.twilio_helpers import new_sid, send_sms, send_whatsapp
from tests.webhooks.test_voice import say_turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_down() -> Iterator[Callable[[], None]]:
    """The database is unreachable until the function this yields is called (and after the test)."""
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)

    def back_up() -> None:
        connection.close()
        settings_dict.clear()
        settings_dict.update(saved)

    connection.close()
    settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(free_port())
    try:
        yield back_up
    finally:
        back_up()


SMS_SID, WHATSAPP_SID, CALL_SID = new_sid("SM"), new_sid("SM"), new_sid("CA")
DELIVERIES = {
    "sms": lambda client: send_sms(client, "+15551234567", "Hello", MessageSid=SMS_SID),
    "whatsapp": lambda client: send_whatsapp(client, "+15551234567", "Hello", MessageSid=WHATSAPP_SID),
    "voice turn": lambda client: say_turn(client, CALL_SID, 1, "Hello"),
}


@pytest.mark.parametrize("deliver", DELIVERIES.values(), ids=DELIVERIES.keys())
def test_an_unreachable_database_answers_503_and_the_retry_is_stored(client, deliver, database_down):
    response = deliver(client)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"Database unavailable" in response.content

    database_down()  # back up: Twilio's retry
    assert deliver(client).status_code == 200
    assert Session.objects.count() == 1
    assert Message.objects.filter(direction="inbound").count() == 1
