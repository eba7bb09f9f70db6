"""Each process remembers channels for `CHANNEL_CACHE_TTL`, so an inbound message skips that query;
an admin edit applies at once in its own process and within the TTL in every other one."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from sessions_app.ingest.channels import CHANNEL_CACHE_TTL
from sessions_app.models import Channel, Session
from tests.twilio_helpers import OUR_NUMBER, send_sms

pytestmark = pytest.mark.django_db

NOON = datetime(2025, 1, 15, 12, 0, 0, tzinfo=UTC)
PERSON = "+1234567890"


def channel_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if 'FROM "sessions_app_channel"' in q["sql"]]


def committed_sms(client, capture, body: str) -> None:
    with capture(execute=True):
        assert send_sms(client, PERSON, body).status_code == 200


def test_a_channel_is_read_once_and_then_remembered(client, django_capture_on_commit_callbacks):
    committed_sms(client, django_capture_on_commit_callbacks, "Hello")
    with CaptureQueriesContext(connection) as captured:
        committed_sms(client, django_capture_on_commit_callbacks, "Again")
    assert channel_queries(captured) == []
    assert Session.objects.get().message_count == 4  # two texts, two replies


def test_an_admin_edit_applies_at_once_in_the_process_that_saved_it(
    client, django_capture_on_commit_callbacks
):
    with time_machine.travel(NOON, tick=False) as clock:
        committed_sms(client, django_capture_on_commit_callbacks, "Hello")
        channel = Channel.objects.get(address=OUR_NUMBER)
        channel.reuse_window = 5
        channel.save(update_fields=["reuse_window"])
        clock.shift(10)
        committed_sms(client, django_capture_on_commit_callbacks, "Ten seconds later")
    assert Session.objects.count() == 2


def test_an_edit_made_elsewhere_applies_once_the_ttl_has_passed(client, django_capture_on_commit_callbacks):
    with time_machine.travel(NOON, tick=False) as clock:
        committed_sms(client, django_capture_on_commit_callbacks, "Hello")
        # As another process or server saving it: no signal reaches this process.
        Channel.objects.filter(address=OUR_NUMBER).update(reuse_window=5)
        clock.shift(10)
        committed_sms(client, django_capture_on_commit_callbacks, "still within the TTL")
        assert Session.objects.count() == 1  # the remembered 300 s window decided
        clock.shift(CHANNEL_CACHE_TTL.total_seconds())
        committed_sms(client, django_capture_on_commit_callbacks, "after the TTL")
    assert Session.objects.count() == 2  # the 5 s window, read again, decided


def test_a_channel_from_a_rolled_back_transaction_is_not_remembered(
    client, django_capture_on_commit_callbacks
):
    def fail_message_inserts(execute, sql, params, many, context):
        # The ORM version's message insert, or PostgreSQL's one call that does it all.
        if (
            sql.lstrip()
            .upper()
            .startswith(('INSERT INTO "SESSIONS_APP_MESSAGE"', "SELECT * FROM SESSIONS_APP_RECORD"))
        ):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with django_capture_on_commit_callbacks(execute=True), connection.execute_wrapper(fail_message_inserts):
        assert send_sms(client, PERSON, "Hello").status_code == 503
    assert not Channel.objects.filter(surface="").exists()  # the seed surfaces' channels are seeded
    with CaptureQueriesContext(connection) as captured:
        committed_sms(client, django_capture_on_commit_callbacks, "Hello")
    assert len(channel_queries(captured)) >= 1
    assert Channel.objects.filter(surface="").count() == 1 and Session.objects.count() == 1


def test_the_ttl_is_bounded_also_when_the_clock_goes_back(client, django_capture_on_commit_callbacks):
    with time_machine.travel(NOON, tick=False) as clock:
        committed_sms(client, django_capture_on_commit_callbacks, "Hello")
        clock.move_to(NOON - timedelta(hours=1))
        with CaptureQueriesContext(connection) as captured:
            committed_sms(client, django_capture_on_commit_callbacks, "An hour earlier, says the clock")
    assert len(channel_queries(captured)) >= 1


def test_a_remembered_channel_is_handed_out_as_a_copy(client, django_capture_on_commit_callbacks):
    from sessions_app.ingest.channels import cached_channel

    committed_sms(client, django_capture_on_commit_callbacks, "Hello")
    first = cached_channel("sms", OUR_NUMBER)
    assert first is not None and first._state.db == "default" and not first._state.adding
    first.name = "changed by a caller"
    first._state.fields_cache["x"] = object()
    second = cached_channel("sms", OUR_NUMBER)
    assert second is not None and second is not first
    assert second.name != "changed by a caller" and second.pk == first.pk
    assert second._state is not first._state and "x" not in second._state.fields_cache
