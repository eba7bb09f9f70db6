"""Seed 000's generated fields (issue 20): titles and descriptions from the conversation or, without
messages, from who the session is with; an SVG thumbnail served by us; messageCount and lastActivity
of the session's own messages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from sessions_app.models import Session
from sessions_app.surfaces.thumbnails import colour
from tests.api.test_seed000_webhook import call, webhook  # noqa: F401  (the fixture)
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db


def test_without_messages_the_title_comes_from_name_and_company_never_a_constant(api, webhook):  # noqa: F811
    data = call(api, webhook, method="create", sessionId="session_1")
    assert data.json()["data"]["title"] == "Chat with User Name (Company Name)"
    assert "User Name of Company Name" in data.json()["data"]["description"]
    other = api.post(
        "/webhook/sessions",
        {"method": "create", "sessionId": "session_2", "phoneNumber": "+31612345679", "name": "Ana",
         "companyName": "Acme"},
        auth=webhook,
    )  # fmt: skip
    assert other.json()["data"]["title"] == "Chat with Ana (Acme)"
    # update does not echo the client's title: with no messages it stays the generated one
    updated = call(api, webhook, method="update", sessionId="session_1", title="Mine", description="D")
    assert updated.json()["data"]["title"] == "Chat with User Name (Company Name)"


def test_titles_come_from_messages_whichever_surface_stored_them(api, webhook, client):  # noqa: F811
    send_sms(client, "+31612345678", "I want to discuss the mobile app features")
    sms_session = Session.objects.get()
    listed = call(api, webhook, method="list").json()["data"]
    assert [s["sessionId"] for s in listed] == [str(sms_session.pk)]
    assert listed[0]["messageCount"] == sms_session.messages.count() >= 1
    updated = call(api, webhook, method="update", sessionId=str(sms_session.pk)).json()["data"]
    assert updated["title"] == "I want to discuss the mobile app features"


def test_the_thumbnail_is_an_svg_of_the_initials_stable_until_the_title_changes(api, webhook, client):  # noqa: F811
    data = call(api, webhook, method="create", sessionId="session_1").json()["data"]
    url = data["thumbnail"]
    assert call(api, webhook, method="get", sessionId="session_1").json()["data"]["thumbnail"] == url
    path = url.removeprefix("http://testserver")
    image = client.get(path)
    assert image.status_code == 200 and image["Content-Type"] == "image/svg+xml"
    assert "max-age" in image["Cache-Control"] and "public" in image["Cache-Control"]
    svg = image.content.decode()
    assert ">CW<" in svg  # "Chat with ..."
    assert colour(Session.objects.get(external_id="session_1").pk) in svg
    assert client.get(re.sub(r"v=\w+", "v=forged", path)).status_code == 404
    # A new title, a new URL; the old one no longer answers.
    session = Session.objects.get(external_id="session_1")
    session.title = "Order question"
    session.save(update_fields=["title"])
    new_url = call(api, webhook, method="get", sessionId="session_1").json()["data"]["thumbnail"]
    assert new_url != url and client.get(path).status_code == 404
    assert ">OQ<" in client.get(new_url.removeprefix("http://testserver")).content.decode()


def test_update_counts_as_activity_and_last_activity_moves(api, webhook):  # noqa: F811
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        call(api, webhook, method="create", sessionId="session_1")
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        call(api, webhook, method="update", sessionId="session_1")
    got = call(api, webhook, method="get", sessionId="session_1").json()["data"]
    assert got["lastActivity"] == (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["messageCount"] == 0
