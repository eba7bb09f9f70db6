import pytest

from sessions_app.models import Contact, Message, Session
from tests.fixtures import twilio_payload
from tests.twilio_helpers import WHATSAPP_URL, post_signed, send_whatsapp

pytestmark = pytest.mark.django_db


def test_it_stores_profile_name_and_wa_id_on_the_contact(client):
    response = post_signed(client, WHATSAPP_URL, twilio_payload("whatsapp"))
    assert response.status_code == 200
    contact = Contact.objects.get()
    assert contact.phone == "+40721234567"
    assert contact.whatsapp_id == "40721234567"
    assert contact.whatsapp_profile_name == "Ana Pop"
    session = Session.objects.get()
    assert session.channel_kind == "whatsapp"
    assert session.channel.address == "+15005550006"
    assert session.title == "WhatsApp from +40721234567"
    assert Message.objects.get().content == "Bună ziua!"


def test_a_new_profile_name_updates_the_contact(client):
    send_whatsapp(client, "+40721234567", "first", ProfileName="Ana")
    send_whatsapp(client, "+40721234567", "second", ProfileName="Ana Pop")
    assert Contact.objects.get().whatsapp_profile_name == "Ana Pop"


def test_a_whatsapp_body_longer_than_1600_is_fine(client):
    assert send_whatsapp(client, body="x" * 2000).status_code == 200
