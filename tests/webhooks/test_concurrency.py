"""The race on a number's first texts, across real worker processes.

Twilio retries and people type fast, so the first messages of a conversation can reach different
gunicorn workers at the same instant. Each worker then finds no session for the pair; only the
per-pair lock in `ingest.record_inbound_message` makes the later ones wait and join the first one's
session. An in-process test cannot show that (one process, one connection), so these serve the
product under gunicorn with several worker processes and release many clients together: once with
sync workers (the production layout: four requests race at a time), and once with threaded workers,
where every one of the clients' requests is handled at the same moment on its own database
connection, in four processes.

Two starting points: a number we have never seen (the contact row is created in the race too, and
its unique index already makes the later inserts wait), and a number we know from before with no
open session (its last session ended, or it wrote on another channel), where only the pair's lock
stands between the workers and one session each.
"""

from __future__ import annotations

import http.client
import itertools
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings
from twilio.request_validator import RequestValidator

from sessions_app.models import Contact, Direction, Message, Session
from tests.gunicorn_server import gunicorn
from tests.twilio_helpers import OUR_NUMBER, SMS_URL

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 24
ROUNDS = 4
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Delivery:
    from_phone: str
    sid: str
    body: str


def new_number() -> str:
    # A fresh number per round (and per run: the random middle part), so each round is a first text.
    return f"+1555{secrets.randbelow(1000):03d}{next(_numbers):04d}"


def deliveries_for(from_phone: str, count: int, redeliveries: int) -> list[Delivery]:
    """`count` webhooks from `from_phone`: `redeliveries` of them repeat the first MessageSid."""
    first = Delivery(from_phone, "SM" + secrets.token_hex(16), "first")
    others = [
        Delivery(from_phone, "SM" + secrets.token_hex(16), f"text {n}")
        for n in range(count - 1 - redeliveries)
    ]
    # Redeliveries spread among the distinct texts: a run of equal MessageSids at the front would
    # queue on the message table's unique index and hide the race on the session.
    deliveries = [first, *others]
    for n in range(redeliveries):
        deliveries.insert(len(deliveries) * (n + 1) // (redeliveries + 1) + 1, first)
    return deliveries


@pytest.fixture(params=[1, CLIENTS // 4], ids=["4-sync-workers", f"4-workers-of-{CLIENTS // 4}-threads"])
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    with gunicorn(workers=4, threads=request.param) as origin:
        _warm_up(origin, CLIENTS if request.param > 1 else 8)
        yield origin


def _warm_up(origin: str, clients: int) -> None:
    """One request per connection until every worker has loaded its views and opened its database
    connection, so the measured rounds start with all workers equally ready."""
    post_together(
        origin, [Delivery(new_number(), "SM" + secrets.token_hex(16), "warm-up") for _ in range(clients)]
    )


def post_together(origin: str, deliveries: list[Delivery]) -> list[int]:
    """POST every delivery on its own connection, all released at once; the response statuses."""
    parts = urlsplit(origin)
    signer = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    barrier = threading.Barrier(len(deliveries))
    statuses: list[int] = [0] * len(deliveries)

    def post(index: int, delivery: Delivery) -> None:
        params = {
            "MessageSid": delivery.sid,
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "From": delivery.from_phone,
            "To": OUR_NUMBER,
            "Body": delivery.body,
            "NumMedia": "0",
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signer.compute_signature(origin + SMS_URL, params),
        }
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.connect()  # connected before the barrier: only the requests race
            barrier.wait(timeout=30)
            conn.request("POST", SMS_URL, body=urlencode(params), headers=headers)
            response = conn.getresponse()
            response.read()
            statuses[index] = response.status
        finally:
            conn.close()

    threads = [threading.Thread(target=post, args=(i, d)) for i, d in enumerate(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def assert_one_session_with_each_message_once(from_phone: str, deliveries: list[Delivery]) -> None:
    sids = {d.sid for d in deliveries if d.from_phone == from_phone}
    sessions = list(Session.objects.filter(contact__phone=from_phone))
    assert len(sessions) == 1, f"{len(sessions)} sessions for one number's simultaneous first texts"
    session = sessions[0]
    inbound = list(
        Message.objects.filter(session=session, direction=Direction.INBOUND).values_list(
            "external_id", flat=True
        )
    )
    assert sorted(inbound) == sorted(sids), "every distinct MessageSid stored exactly once"
    assert not Message.objects.filter(external_id__in=sids).exclude(session=session).exists()
    # The counter counts what the session holds: the inbound texts plus any agent replies to them.
    assert session.message_count == session.messages.count()
    assert session.messages.filter(direction=Direction.INBOUND).count() == len(sids)


def a_number(known: bool) -> str:
    number = new_number()
    if known:
        Contact.objects.create(phone=number)
    return number


@pytest.mark.parametrize("known", [False, True], ids=["new-number", "known-number"])
def test_simultaneous_first_texts_of_a_number_make_one_session(server, known):
    for _ in range(ROUNDS):
        number = a_number(known)
        deliveries = deliveries_for(number, CLIENTS, redeliveries=6)
        statuses = post_together(server, deliveries)
        assert_one_session_with_each_message_once(number, deliveries)
        assert statuses == [200] * CLIENTS, f"answers other than 200: {[s for s in statuses if s != 200]}"


@pytest.mark.parametrize("known", [False, True], ids=["new-numbers", "known-numbers"])
def test_two_numbers_racing_at_once_get_one_session_each(server, known):
    half = CLIENTS // 2
    for _ in range(ROUNDS):
        first, second = a_number(known), a_number(known)
        ones = deliveries_for(first, half, redeliveries=3)
        twos = deliveries_for(second, half, redeliveries=3)
        # Interleaved, so both numbers' texts reach the workers at the same moment.
        deliveries = [d for pair in zip(ones, twos, strict=True) for d in pair]
        statuses = post_together(server, deliveries)
        assert_one_session_with_each_message_once(first, deliveries)
        assert_one_session_with_each_message_once(second, deliveries)
        assert statuses == [200] * CLIENTS, f"answers other than 200: {[s for s in statuses if s != 200]}"
