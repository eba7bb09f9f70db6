"""Event webhooks against real local receivers: outbox, signatures, retries, order, 410, SSRF."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from sessions_app.delivery.outbound import record_delivery_status, record_outbound_message
from sessions_app.events import dispatch
from sessions_app.events.addresses import check_endpoint_url
from sessions_app.events.record import kick, kick_key, wanted
from sessions_app.ingest.channels import channel_for
from sessions_app.ingest.rule import InboundMessage, record_phone_message
from sessions_app.lifecycle.sessions import create_session
from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.lifecycle.transitions import transition_session
from sessions_app.models import (
    ChannelKind,
    Contact,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    EventEndpoint,
    Message,
    Role,
    Session,
    SessionStatus,
)
from sessions_app.tasks import purge_event_log, recover_event_deliveries
from tests.event_receiver import Receiver, running_receiver
from tests.factories import EventEndpointFactory, SessionFactory
from tests.twilio_helpers import OUR_NUMBER, send_sms

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_kick_flags():
    """The delivery tasks' flags live in the shared cache (Redis), which outlives each test."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _private_addresses_allowed(settings):
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = True
    dispatch.close_pool()
    yield
    dispatch.close_pool()


@pytest.fixture
def receiver():
    yield from running_receiver()


def subscribe(receiver: Receiver, types: list[str] | None = None) -> EventEndpoint:
    endpoint = EventEndpointFactory(url=receiver.url, event_types=types or ["*"])
    receiver.secrets = [endpoint.secret]
    return endpoint


def test_every_delivery_verifies_with_the_standardwebhooks_library(
    receiver, client, django_capture_on_commit_callbacks
):
    subscribe(receiver)
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15551230001", "Hello there")
    delivered = receiver.delivered()
    # The session opened, the contact's message, the agent's reply.
    assert [r.payload["type"] for r in delivered] == ["session.opened", "message.created", "message.created"]
    assert all(r.verified for r in delivered)
    first = delivered[1]
    signature = first.headers["webhook-signature"]
    assert signature.startswith("v1,")
    assert Webhook(receiver.secrets[0]).verify(first.body, first.headers) == first.payload
    data = first.payload["data"]
    assert data["message"]["direction"] == "inbound"
    assert data["message"]["role"] == "contact"
    assert data["message"]["content"] == "Hello there"
    assert data["session"]["contact"]["phone"] == "+15551230001"
    assert [r.payload["data"]["sequence"] for r in delivered] == [1, 2, 3]
    assert delivered[2].payload["data"]["message"]["role"] == "agent"
    assert set(first.payload) == {"type", "timestamp", "data"}


def test_a_wrong_secret_does_not_verify(receiver, client, django_capture_on_commit_callbacks):
    subscribe(receiver, ["session.opened"])
    other = EventEndpointFactory(url="https://elsewhere.example.com/")
    receiver.secrets = [other.secret]
    with django_capture_on_commit_callbacks(execute=True):
        send_sms(client, "+15551230002", "Hi")
    assert [r.verified for r in receiver.received] == [False]


def test_after_a_rotation_both_secrets_verify_for_a_day(receiver):
    endpoint = subscribe(receiver, ["session.status_changed"])
    old = endpoint.secret
    new = endpoint.rotate_secret()
    assert new != old and new.startswith("whsec_")
    session = SessionFactory()
    transition_session(session, SessionStatus.CLOSED, actor="staff:alice")
    dispatch.deliver_due(endpoint.pk)
    (received,) = receiver.received
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(received.body, received.headers)
    assert received.payload["data"] | {"session": None} == {
        "session": None,
        "from": "active",
        "to": "closed",
        "actor": "staff:alice",
        "sequence": 1,
    }
    with time_machine.travel(timezone.now() + timedelta(hours=25), tick=False):
        assert EventEndpoint.objects.get(pk=endpoint.pk).signing_secrets() == [new]


def test_a_receiver_down_through_several_messages_gets_every_event_once_in_order(
    receiver, client, django_capture_on_commit_callbacks
):
    endpoint = subscribe(receiver)
    receiver.stop()
    with django_capture_on_commit_callbacks(execute=True):
        for text in ("one", "two", "three"):
            send_sms(client, "+15551230003", text)
    assert receiver.received == []
    assert Event.objects.count() == 7  # opened, three messages, three replies
    failed = Delivery.objects.get(attempts=1)
    assert failed.sequence == 1 and failed.state == "pending"
    attempt = DeliveryAttempt.objects.get()
    assert attempt.error.startswith("ConnectError")
    assert 4.5 <= (failed.next_attempt_at - attempt.attempted_at).total_seconds() <= 5.5  # 5 s ± 10 %
    assert endpoint.__class__.objects.get(pk=endpoint.pk).failing_since is not None

    receiver.start()
    with time_machine.travel(timezone.now() + timedelta(seconds=10), tick=True):
        recover_event_deliveries()
        delivered = receiver.delivered()
        assert [r.payload["data"]["sequence"] for r in delivered] == [1, 2, 3, 4, 5, 6, 7]
        assert all(r.verified for r in delivered)
    assert len({r.webhook_id for r in delivered}) == 7
    bodies = {(e.webhook_id, e.body.encode()) for e in Event.objects.all()}
    assert {(r.webhook_id, r.body) for r in delivered} == bodies
    assert set(Delivery.objects.values_list("state", flat=True)) == {"delivered"}
    assert EventEndpoint.objects.get(pk=endpoint.pk).failing_since is None


def test_a_failing_event_holds_back_only_its_own_session_on_that_endpoint(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    healthy = Receiver()
    healthy.start()
    try:
        other = EventEndpointFactory(url=healthy.url, event_types=["message.created"])
        a, b = SessionFactory(), SessionFactory()
        receiver.answer = lambda payload: 500 if payload["data"]["message"]["content"] == "a1" else 200
        record_outbound_message(a, "a1", role=Role.STAFF)
        record_outbound_message(a, "a2", role=Role.STAFF)
        record_outbound_message(b, "b1", role=Role.STAFF)
        dispatch.deliver_due(endpoint.pk)
        dispatch.deliver_due(other.pk)
        contents = [r.payload["data"]["message"]["content"] for r in receiver.delivered()]
        assert contents == ["b1"]  # a2 waits for a1
        assert [r.payload["data"]["message"]["content"] for r in healthy.delivered()] == ["a1", "a2", "b1"]
        dispatch.deliver_due(endpoint.pk)  # a1's retry is not due yet: a2 still waits
        assert len(receiver.delivered()) == 1

        receiver.answer = lambda payload: 200
        with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=True):
            dispatch.deliver_due(endpoint.pk)
        contents = [r.payload["data"]["message"]["content"] for r in receiver.delivered()]
        assert contents == ["b1", "a1", "a2"]
    finally:
        healthy.stop()


def test_retries_follow_the_schedule_then_give_up(receiver, settings):
    settings.EVENT_RETRY_SCHEDULE = [10, 100]
    endpoint = subscribe(receiver, ["message.created"])
    receiver.answer = lambda payload: 503
    record_outbound_message(SessionFactory(), "hello", role=Role.STAFF)
    start = timezone.now()
    dispatch.deliver_due(endpoint.pk)
    delivery = Delivery.objects.get()
    first = DeliveryAttempt.objects.get()
    assert 9 <= (delivery.next_attempt_at - first.attempted_at).total_seconds() <= 11
    assert delivery.last_status_code == 503
    with time_machine.travel(start + timedelta(seconds=12), tick=True):
        dispatch.deliver_due(endpoint.pk)
        delivery.refresh_from_db()
        assert delivery.state == "pending" and delivery.attempts == 2
        second = DeliveryAttempt.objects.latest("attempted_at")
        assert 90 <= (delivery.next_attempt_at - second.attempted_at).total_seconds() <= 110
    with time_machine.travel(start + timedelta(seconds=200), tick=True):
        dispatch.deliver_due(endpoint.pk)
    delivery.refresh_from_db()
    assert delivery.state == "failed" and delivery.attempts == 3
    assert [a.status_code for a in DeliveryAttempt.objects.order_by("id")] == [503, 503, 503]
    assert len(receiver.received) == 3
    assert len({r.webhook_id for r in receiver.received}) == 1  # every retry is the same event


def test_a_change_that_rolls_back_sends_nothing(receiver, django_capture_on_commit_callbacks):
    endpoint = subscribe(receiver)
    session = SessionFactory()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        record_outbound_message(session, "never", role=Role.STAFF)
        transition_session(session, SessionStatus.CLOSED, actor="staff:alice")
        raise RuntimeError("the change fails")
    assert Event.objects.count() == 0
    assert Session.objects.get(pk=session.pk).event_sequence == 0
    dispatch.deliver_due(endpoint.pk)
    recover_event_deliveries()
    assert receiver.received == []


def test_no_endpoint_means_no_event_and_no_query(django_assert_num_queries):
    session = SessionFactory()
    assert not wanted("session.status_changed")  # read once, then from this process's cache
    # Savepoint, lock, update, status change, release: the transition's own queries only.
    with django_assert_num_queries(5):
        transition_session(session, SessionStatus.CLOSED, actor="staff:alice")
    assert Event.objects.count() == 0


def test_410_gone_disables_the_endpoint_at_once(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    receiver.answer = lambda payload: 410
    session = SessionFactory()
    record_outbound_message(session, "first", role=Role.STAFF)
    record_outbound_message(session, "second", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "410" in endpoint.disabled_reason
    assert len(receiver.received) == 1
    record_outbound_message(session, "third", role=Role.STAFF)  # nobody subscribes any more
    assert Event.objects.count() == 2
    recover_event_deliveries()
    assert len(receiver.received) == 1


def test_an_endpoint_failing_for_five_days_is_disabled_with_a_notice_in_admin(receiver, admin_client):
    endpoint = subscribe(receiver, ["message.created"])
    receiver.answer = lambda payload: 500
    record_outbound_message(SessionFactory(), "x", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is not None
    with time_machine.travel(timezone.now() + timedelta(days=5, minutes=1), tick=True):
        record_outbound_message(SessionFactory(), "y", role=Role.STAFF)
        dispatch.deliver_due(endpoint.pk)
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "5 days" in endpoint.disabled_reason
    page = admin_client.get("/admin/sessions_app/eventendpoint/")
    assert page.status_code == 200
    assert "disabled" in page.content.decode() and "5 days" in page.content.decode()


def test_the_sweep_records_one_status_event_per_moved_session(receiver, settings):
    endpoint = subscribe(receiver, ["session.status_changed"])
    old = timezone.now() - timedelta(seconds=settings.SESSION_ABANDON_AFTER + 60)
    sessions = [SessionFactory(last_activity_at=old, last_message_at=old) for _ in range(3)]
    sweep_sessions()
    events = list(Event.objects.order_by("id"))
    assert {e.session_id for e in events} == {s.pk for s in sessions}
    assert {e.sequence for e in events} == {1}
    dispatch.deliver_due(endpoint.pk)
    payloads = [r.payload for r in receiver.delivered()]
    assert {(p["data"]["from"], p["data"]["to"], p["data"]["actor"]) for p in payloads} == {
        ("active", "abandoned", "system:sweep")
    }
    assert {p["data"]["session"]["status"] for p in payloads} == {"abandoned"}


def test_twilio_status_callbacks_become_message_status_events(receiver):
    endpoint = subscribe(receiver, ["message.status_changed"])
    session = SessionFactory()
    message = record_outbound_message(session, "sent", role=Role.AGENT)
    Message.objects.filter(pk=message.pk).update(
        provider="twilio", external_id="SM0123", delivery_status=DeliveryStatus.SENT
    )
    assert record_delivery_status("SM0123", "delivered")
    assert record_delivery_status("SM0123", "sent")  # late, moves nothing: no event
    dispatch.deliver_due(endpoint.pk)
    (received,) = receiver.delivered()
    assert received.payload["type"] == "message.status_changed"
    assert received.payload["data"]["message"]["delivery_status"] == "delivered"


def test_the_purge_removes_old_attempts_and_finished_events(receiver, settings):
    endpoint = subscribe(receiver, ["message.created"])
    record_outbound_message(SessionFactory(), "old", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.EVENT_LOG_RETENTION + 60)):
        record_outbound_message(SessionFactory(), "new", role=Role.STAFF)
        assert purge_event_log() == {"attempts": 1, "events": 1, "orphan_deliveries": 0}
    assert list(Event.objects.values_list("sequence", flat=True)) == [1]
    assert Delivery.objects.get().state == "pending"


def test_resend_sends_a_delivered_event_again_with_the_same_id(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    record_outbound_message(SessionFactory(), "again", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    assert dispatch.resend(Delivery.objects.all()) == 1
    dispatch.deliver_due(endpoint.pk)
    first, second = receiver.delivered()
    assert first.webhook_id == second.webhook_id and first.body == second.body


# --- SSRF -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost:8000/hook", "127.0.0.1, a loopback address"),
        ("http://127.0.0.1/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ],
)
def test_registration_refuses_urls_that_reach_private_addresses(settings, url, problem):
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = False
    settings.DEBUG = True
    with pytest.raises(ValueError, match=problem):
        check_endpoint_url(url)


def test_registration_refuses_other_schemes_and_plain_http_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(ValueError, match="https"):
        check_endpoint_url("http://127.0.0.1/hook")
    with pytest.raises(ValueError, match="Only http and https"):
        check_endpoint_url("ftp://127.0.0.1/hook")
    settings.DEBUG = True
    check_endpoint_url("http://127.0.0.1/hook")  # private allowed by the fixture's setting


def test_delivery_refuses_an_address_that_became_private(receiver, settings):
    # Registered while allowed; the rule is enforced again where the connection is made.
    endpoint = subscribe(receiver, ["message.created"])
    endpoint.url = receiver.url.replace("127.0.0.1", "localhost")
    endpoint.save(update_fields=["url"])
    settings.EVENT_WEBHOOKS_ALLOW_PRIVATE = False
    record_outbound_message(SessionFactory(), "secret stuff", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    assert receiver.received == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code is None
    assert "loopback" in attempt.error and "refused" in attempt.error


def test_a_kept_alive_connection_is_reused_across_deliveries(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    session = SessionFactory()
    for text in ("a", "b", "c"):
        record_outbound_message(session, text, role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    delivered = receiver.delivered()
    assert len(delivered) == 3
    assert len({r.connection for r in delivered}) == 1  # one TCP connection carried all three
    record_outbound_message(session, "d", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)  # the next batch reuses it too
    assert len({r.connection for r in receiver.delivered()}) == 1


def concurrently(writers: list[Callable[[], None]]) -> list[BaseException]:
    """Run each writer in a thread of its own (its own database connection), all at once; what
    they raised."""
    errors: list[BaseException] = []

    def run(writer: Callable[[], None]) -> None:
        try:
            writer()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_sequences_under_concurrent_writers_grow_by_exactly_one(receiver):
    subscribe(receiver, ["message.created"])
    session = SessionFactory()

    def write() -> None:
        for n in range(15):
            record_outbound_message(session, f"m{n}", role=Role.STAFF)

    assert concurrently([write] * 4) == []
    assert sorted(Event.objects.values_list("sequence", flat=True)) == list(range(1, 61))
    # Four writers' tasks delivered concurrently, and the receiver still saw them in order.
    assert [r.payload["data"]["sequence"] for r in receiver.delivered()] == list(range(1, 61))
    assert Session.objects.get(pk=session.pk).event_sequence == 60


@pytest.mark.django_db(transaction=True)
def test_sequences_stay_gapless_when_inbound_messages_and_replies_race(receiver):
    # Inbound messages take their numbers inside the reuse rule's function, replies with their own
    # UPDATE of the counter: both on the session's row, so they queue on its lock.
    subscribe(receiver, ["session.opened", "message.created"])

    def inbound(text: str) -> Session:
        quiet = InboundMessage(content=text, provider="twilio", expects_reply=False)
        return record_phone_message(
            kind=ChannelKind.SMS, to=OUR_NUMBER, from_phone="+15551239002", inbound=quiet
        ).session

    session = inbound("opens")

    def texts() -> None:
        for n in range(10):
            assert inbound(f"m{n}").pk == session.pk

    def replies() -> None:
        for n in range(10):
            record_outbound_message(session, f"r{n}", role=Role.STAFF)

    assert concurrently([texts, replies, texts, replies]) == []
    assert sorted(Event.objects.values_list("sequence", flat=True)) == list(range(1, 43))
    assert Session.objects.get(pk=session.pk).event_sequence == 42


def test_a_session_opened_without_a_message_is_an_event_too(receiver, api_staff_session):
    subscribe(receiver, ["session.opened"])
    session = api_staff_session()
    dispatch.deliver_due(EventEndpoint.objects.get().pk)
    (received,) = receiver.delivered()
    assert received.payload["data"]["session"]["id"] == str(session.pk)
    assert received.payload["data"]["sequence"] == 1


@pytest.fixture
def api_staff_session():
    def open_one() -> Session:
        channel = channel_for(ChannelKind.API, "")
        contact = Contact.objects.create(business_id="B1", external_user_id="u1")
        return create_session(channel, contact, title="Opened by the API")[0]

    return open_one


def test_admin_lists_deliveries_with_filters_and_resends_them(receiver, admin_client):
    endpoint = subscribe(receiver, ["message.created"])
    record_outbound_message(SessionFactory(), "logged", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    delivery = Delivery.objects.get()
    for query in (
        "",
        "?state__exact=delivered",
        f"?endpoint__id__exact={endpoint.pk}&event__type=message.created",
    ):
        page = admin_client.get(f"/admin/sessions_app/delivery/{query}")
        assert page.status_code == 200
        assert f"/admin/sessions_app/delivery/{delivery.pk}/change/" in page.content.decode()
    assert admin_client.get(f"/admin/sessions_app/delivery/{delivery.pk}/change/").status_code == 200
    log = admin_client.get("/admin/sessions_app/deliveryattempt/?status_code=200")
    assert log.status_code == 200 and "200" in log.content.decode()
    response = admin_client.post(
        "/admin/sessions_app/delivery/", {"action": "resend", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    # Queued on commit; here, as the task would, the endpoint's due deliveries are sent.
    dispatch.deliver_due(endpoint.pk)
    assert [r.webhook_id for r in receiver.delivered()] == [delivery.event.webhook_id] * 2


def test_an_endpoint_that_does_not_answer_rests_instead_of_being_tried_per_event(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    receiver.stop()
    for _ in range(3):
        record_outbound_message(SessionFactory(), "waits", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    assert DeliveryAttempt.objects.count() == 1  # the batch stopped at the first refusal
    assert list(Delivery.objects.order_by("id").values_list("state", "attempts")) == [
        ("pending", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    kick(endpoint.pk)  # a new event's commit meanwhile: no task (it would run inline here)
    assert DeliveryAttempt.objects.count() == 1
    receiver.start()
    recover_event_deliveries()  # recovery does not wait for the rest to end
    assert len(receiver.delivered()) == 2  # the other sessions' events; the failed one is not due


def test_a_commit_queues_tasks_only_for_endpoints_whose_flag_is_not_set(
    receiver, django_capture_on_commit_callbacks
):
    busy = subscribe(receiver, ["message.created"])
    idle_receiver = Receiver()
    idle_receiver.start()
    try:
        idle = EventEndpointFactory(url=idle_receiver.url, event_types=["message.created"])
        cache.set(kick_key(busy.pk), 1)  # its task is queued or running: it will pick the event up
        with django_capture_on_commit_callbacks(execute=True):
            record_outbound_message(SessionFactory(), "hello", role=Role.STAFF)
        assert receiver.received == []  # no second task for the busy endpoint
        assert len(idle_receiver.delivered()) == 1  # the idle one's task ran (inline, eager)
        assert cache.get(kick_key(idle.pk)) is None  # and cleared its flag when it was done
        dispatch.deliver_due(busy.pk)  # what the running task does
        assert len(receiver.delivered()) == 1
    finally:
        idle_receiver.stop()


def test_a_kept_alive_connection_the_server_dropped_is_replaced_without_a_lost_or_double_delivery(
    receiver,
):
    endpoint = subscribe(receiver, ["message.created"])
    receiver.hang_up_on_second = True  # the second request on a connection gets no answer
    session = SessionFactory()
    for text in ("a", "b", "c"):
        record_outbound_message(session, text, role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    delivered = receiver.delivered()
    assert [r.payload["data"]["message"]["content"] for r in delivered] == ["a", "b", "c"]
    # "b" and "c" each reached a connection as its second request, were dropped, and went again on
    # a new connection: three connections, five arrivals, one answered delivery each.
    assert len({r.connection for r in delivered}) == 3
    ids = [r.webhook_id for r in delivered]
    assert receiver.arrived == [ids[0], ids[1], ids[1], ids[2], ids[2]]
    assert set(Delivery.objects.values_list("state", "attempts")) == {("delivered", 1)}
    assert list(DeliveryAttempt.objects.values_list("status_code", flat=True)) == [200, 200, 200]


def test_answers_that_close_the_connection_are_not_reused(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    receiver.close_connections = True
    session = SessionFactory()
    for text in ("a", "b"):
        record_outbound_message(session, text, role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    delivered = receiver.delivered()
    assert len(delivered) == 2 and len({r.connection for r in delivered}) == 2


def test_the_log_keeps_the_first_kilobyte_of_any_answer_even_binary(receiver):
    endpoint = subscribe(receiver, ["message.created"])
    receiver.body = b"\x00binary" + b"x" * 5000
    record_outbound_message(SessionFactory(), "a", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code == 200
    assert attempt.response == ("\ufffdbinary" + "x" * 5000)[:1024]
    assert Delivery.objects.get().state == "delivered"


@pytest.fixture
def tls_receiver(tmp_path):
    """An https endpoint on 127.0.0.1 with a certificate of its own CA; the CA's file path."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test endpoint")])
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "endpoint.pem", tmp_path / "endpoint.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    receiver = Receiver()
    receiver.tls = tls
    receiver.start()
    try:
        yield receiver, cert_file
    finally:
        receiver.stop()


def test_https_deliveries_check_the_certificate_and_keep_the_connection(tls_receiver, monkeypatch):
    receiver, ca_file = tls_receiver
    endpoint = subscribe(receiver, ["message.created"])
    session = SessionFactory()
    record_outbound_message(session, "untrusted", role=Role.STAFF)
    dispatch.deliver_due(endpoint.pk)
    assert receiver.received == []  # the certificate is not from a trusted CA: no request went
    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code is None and "CERTIFICATE_VERIFY_FAILED" in attempt.error

    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # now the CA is trusted (a new pool reads it)
    dispatch.close_pool()
    record_outbound_message(session, "trusted", role=Role.STAFF)
    with time_machine.travel(timezone.now() + timedelta(seconds=6), tick=True):  # the retry is due
        dispatch.deliver_due(endpoint.pk)
    delivered = receiver.delivered()
    assert [r.payload["data"]["message"]["content"] for r in delivered] == ["untrusted", "trusted"]
    assert all(r.verified for r in delivered)
    assert len({r.connection for r in delivered}) == 1
