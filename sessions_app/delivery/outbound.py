"""Messages we add to a session ourselves (agent replies, staff replies): stored and counted here.

Sending them to the contact's phone is the second half of this module: once an SMS or WhatsApp
message commits, `deliver_message` is queued for it, which sends through
Twilio's REST API and records what Twilio reports; voice replies are spoken by the call's next
turn (`say_replies`).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from sessions_app.delivery import queue
from sessions_app.events.models import EventType
from sessions_app.events.record import EventSpec, record_events, wanted
from sessions_app.models import ChannelKind, DeliveryStatus, Direction, Message, Role, Session, SessionStatus
from sessions_app.phones import mask_phone
from sessions_app.realtime.publish import message_event

# Channels whose outbound messages travel through Twilio's messaging API.
MESSAGING_KINDS = {ChannelKind.SMS, ChannelKind.WHATSAPP}


def record_outbound_message(
    session: Session,
    content: str,
    *,
    role: str,
    in_reply_to: Message | None = None,
    metadata: dict[str, Any] | None = None,
) -> Message:
    """Store a message from our side in `session` and bump its counters, in one transaction.

    A reply goes where the message it answers now is, and a merged session's message to the session
    it was merged into: staff may have split or merged while the agent was thinking (`_home_of`)."""
    with transaction.atomic():
        session = _home_of(session, in_reply_to)
        now = timezone.now()
        message = Message.objects.create(
            session=session,
            direction=Direction.OUTBOUND,
            role=role,
            content=content,
            in_reply_to=in_reply_to,
            metadata=dict(metadata or {}),
            delivery_status=DeliveryStatus.PENDING if session.channel_kind in MESSAGING_KINDS else "",
            created_at=now,
        )
        Session.objects.filter(pk=session.pk).update(
            message_count=F("message_count") + 1, last_message_at=now, last_activity_at=now, updated_at=now
        )
        record_events(session.pk, [EventSpec(EventType.MESSAGE_CREATED, message=message)])
        # Once committed: the session's sockets hear of it, then an SMS or WhatsApp message is sent.
        transaction.on_commit(lambda: message_event(message, session), robust=True)
        if message.delivery_status == DeliveryStatus.PENDING:
            transaction.on_commit(lambda: schedule_delivery(message.pk), robust=True)
    return message


# Merges of merges: a session merged into one that was later merged itself, followed this far.
MAX_MERGE_HOPS = 10


def _home_of(session: Session, in_reply_to: Message | None) -> Session:
    """The session a message from our side belongs in, its row locked until the caller commits:
    the one holding the message it answers, or `session`; a merged one's target in its place. Merge
    and split hold these rows while they move messages (lifecycle/boundaries.py), so once locked the
    answered message stays where it is. `session` itself when nothing moved (the common case: one
    locking read more than before)."""
    home_id = session.pk
    if in_reply_to is not None:
        home_id = (
            Message.objects.filter(pk=in_reply_to.pk).values_list("session_id", flat=True).first() or home_id
        )
    for _ in range(MAX_MERGE_HOPS):
        home = Session.objects.select_for_update(of=("self",)).select_related("contact").get(pk=home_id)
        if home.status != SessionStatus.MERGED or home.merged_into_id is None:
            break
        home_id = home.merged_into_id
    return session if home.pk == session.pk else home


# --- Delivery through Twilio ------------------------------------------------------------------------

log = logging.getLogger(__name__)

# Twilio's statuses in the order a message moves through them; a late callback never moves back.
STATUS_RANK = {
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.QUEUED: 1,
    DeliveryStatus.SENDING: 2,
    DeliveryStatus.SENT: 3,
    DeliveryStatus.DELIVERED: 4,
    DeliveryStatus.UNDELIVERED: 4,
    DeliveryStatus.FAILED: 4,
}
TWILIO_STATUSES = {
    "accepted": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}
SENDING_DISABLED = (
    "Not sent: Twilio sending is disabled (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not both set)."
)
_disabled_logged = False
PHONE_IN_TEXT = re.compile(r"\+?\d[\d ()-]{6,}\d")


class DeliveryDeferred(Exception):
    """Sending failed in a way that may pass (Twilio 5xx, network); the message is pending again."""

    def __init__(self, attempt: int, reason: str) -> None:
        super().__init__(reason)
        self.attempt = attempt


def sending_enabled() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


class _RedirectingHttpClient(TwilioHttpClient):
    """Sends the SDK's requests to TWILIO_API_BASE_URL instead of https://*.twilio.com (local stand-ins)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        target = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, target, *args, **kwargs)


def twilio_client() -> TwilioClient:
    http: TwilioHttpClient
    if settings.TWILIO_API_BASE_URL:
        http = _RedirectingHttpClient(settings.TWILIO_API_BASE_URL, timeout=settings.TWILIO_TIMEOUT)
    else:
        http = TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT)
    return TwilioClient(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=http)


def schedule_delivery(message_id: int) -> None:
    """Queue sending of an outbound SMS/WhatsApp message (called after it committed)."""
    global _disabled_logged
    if not sending_enabled():
        if not _disabled_logged:
            log.warning("%s Replies are stored but not sent.", SENDING_DISABLED)
            _disabled_logged = True
        Message.objects.filter(pk=message_id).update(delivery_error=SENDING_DISABLED)
        return
    queue.enqueue(queue.DELIVER_MESSAGE, message_id)


def _addresses(message: Message) -> tuple[str, str]:
    session = message.session
    to = session.contact.phone if session.contact else ""
    from_ = session.channel.address
    if session.channel_kind == ChannelKind.WHATSAPP:
        return f"whatsapp:{to}", f"whatsapp:{from_}"
    return to, from_


def deliver_message(message_id: int) -> str:
    """Send one pending outbound message through Twilio; returns its delivery status afterwards.

    The pending → sending claim is one conditional UPDATE, so a task delivered twice sends once.
    Raises `DeliveryDeferred` when another attempt is worth it; Twilio 4xx fails at once.
    """
    if not sending_enabled():
        Message.objects.filter(pk=message_id).update(delivery_error=SENDING_DISABLED)
        return DeliveryStatus.PENDING
    now = timezone.now()
    claimed = Message.objects.filter(pk=message_id, delivery_status=DeliveryStatus.PENDING).update(
        delivery_status=DeliveryStatus.SENDING,
        delivery_claimed_at=now,
        delivery_attempts=F("delivery_attempts") + 1,
    )
    if not claimed:
        return str(Message.objects.filter(pk=message_id).values_list("delivery_status", flat=True).first())
    message = Message.objects.select_related("session__contact", "session__channel").get(pk=message_id)
    if not (message.session.contact and message.session.contact.phone and message.session.channel.address):
        return _finish(message, DeliveryStatus.FAILED, "No phone number to send to or from.")
    to, from_ = _addresses(message)
    options: dict[str, Any] = {"to": to, "from_": from_, "body": message.content}
    if settings.PUBLIC_BASE_URL:
        options["status_callback"] = settings.PUBLIC_BASE_URL + reverse("twilio-status")
    try:
        sent = twilio_client().messages.create(**options)
    except TwilioRestException as exc:
        reason = f"Twilio error {exc.code or exc.status}: {exc.msg}"
        # Other 4xx answers (a bad number, a blocked recipient) would fail the same way again; 429
        # is Twilio asking us to slow down, which the backoff does.
        if exc.status >= 500 or exc.status == 429:
            return _retry_or_fail(message, reason)
        return _finish(message, DeliveryStatus.FAILED, reason)
    except (requests.RequestException, TwilioException) as exc:
        return _retry_or_fail(message, f"could not reach Twilio: {type(exc).__name__}")
    status = TWILIO_STATUSES.get(str(sent.status or ""), DeliveryStatus.QUEUED)
    Message.objects.filter(pk=message_id, delivery_status=DeliveryStatus.SENDING).update(
        provider="twilio", external_id=sent.sid, delivery_status=status, delivery_error=""
    )
    log.info("Message %s handed to Twilio as %s (%s)", message_id, sent.sid, status)
    return status


def _finish(message: Message, status: str, reason: str) -> str:
    Message.objects.filter(pk=message.pk, delivery_status=DeliveryStatus.SENDING).update(
        delivery_status=status, delivery_error=reason
    )
    log.error("Message %s not delivered: %s", message.pk, _masked(reason))
    return status


def _retry_or_fail(message: Message, reason: str) -> str:
    attempt = message.delivery_attempts
    reason = f"attempt {attempt}: {reason}"
    if attempt >= settings.TASK_MAX_ATTEMPTS:
        return _finish(message, DeliveryStatus.FAILED, reason)
    Message.objects.filter(pk=message.pk, delivery_status=DeliveryStatus.SENDING).update(
        delivery_status=DeliveryStatus.PENDING, delivery_error=reason
    )
    log.warning("Sending message %s failed (%s); will try again", message.pk, _masked(reason))
    raise DeliveryDeferred(attempt, reason)


def _masked(text: str) -> str:
    """Twilio's error texts quote the number; logs get it masked (staff see it in admin)."""
    return PHONE_IN_TEXT.sub(lambda match: mask_phone(match.group()), text)


def record_delivery_status(sid: str, twilio_status: str, error_code: str = "") -> bool:
    """Twilio's status callback for the outbound message `sid`; False if we know no such message."""
    status = TWILIO_STATUSES.get(twilio_status)
    if status is None:
        return Message.objects.filter(provider="twilio", external_id=sid).exists()
    earlier = [s for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
    changes: dict[str, Any] = {"delivery_status": status}
    if status in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED):
        changes["delivery_error"] = f"Twilio reported {twilio_status}" + (
            f" (error {error_code})" if error_code else ""
        )
    with transaction.atomic():
        updated = Message.objects.filter(
            provider="twilio", external_id=sid, direction=Direction.OUTBOUND, delivery_status__in=earlier
        ).update(**changes)
        if updated and wanted(EventType.MESSAGE_STATUS_CHANGED):
            # The rows this transaction just changed, as they are now (its lock holds them so).
            for message in Message.objects.filter(provider="twilio", external_id=sid):
                record_events(
                    message.session_id, [EventSpec(EventType.MESSAGE_STATUS_CHANGED, message=message)]
                )
    return bool(updated) or Message.objects.filter(provider="twilio", external_id=sid).exists()


def recover_pending_deliveries(limit: int = 500) -> list[int]:
    """Pending deliveries whose task never reached a worker (broker down), oldest first."""
    if not sending_enabled():
        return []
    now = timezone.now()
    grace = now - timedelta(seconds=settings.TASK_RECOVERY_GRACE)
    stale = now - timedelta(seconds=settings.TASK_LEASE)
    # Past a day a reply is no longer worth sending; staff see it pending with its error.
    oldest = now - timedelta(days=1)
    return list(
        Message.objects.filter(
            Q(delivery_claimed_at__isnull=True) | Q(delivery_claimed_at__lt=stale),
            delivery_status=DeliveryStatus.PENDING,
            created_at__lt=grace,
            created_at__gte=oldest,
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def reconcile_lost_deliveries(limit: int = 100) -> tuple[int, int]:
    """`sending` past the lease: the worker died mid-request, so Twilio may or may not have the
    message. Twilio is asked (its list of messages to that number from ours since the claim): one it
    has that no message of ours is recorded with is adopted, SID and status, so it is not sent again;
    one it does not have goes back to `pending` for `recover_pending_deliveries` to send. Either way
    it reaches the contact once. If Twilio cannot be asked, it stays `sending` until the next
    recovery; past a day it is marked failed ("outcome unknown") for staff to see.

    Returns (adopted, sent again). Every change is conditional on the claim it read, so two
    recoveries at once change each message once.
    """
    if not sending_enabled():
        return 0, 0
    now = timezone.now()
    stale = now - timedelta(seconds=settings.TASK_LEASE)
    Message.objects.filter(
        delivery_status=DeliveryStatus.SENDING, delivery_claimed_at__lt=now - timedelta(days=1)
    ).update(
        delivery_status=DeliveryStatus.FAILED,
        delivery_error="Outcome unknown: the worker stopped while sending and Twilio could not be "
        "asked for a day; not sent again to avoid a duplicate.",
    )
    lost = Message.objects.filter(
        delivery_status=DeliveryStatus.SENDING, delivery_claimed_at__lt=stale
    ).select_related("session__contact", "session__channel")
    adopted = again = 0
    for message in lost.order_by("delivery_claimed_at")[:limit]:
        try:
            found = _sent_at_twilio(message)
        except (TwilioException, requests.RequestException) as exc:
            log.warning("Could not ask Twilio about message %s (%s)", message.pk, type(exc).__name__)
            continue
        claim = Message.objects.filter(
            pk=message.pk,
            delivery_status=DeliveryStatus.SENDING,
            delivery_claimed_at=message.delivery_claimed_at,
        )
        if found is not None:
            sid, status = found
            if claim.update(provider="twilio", external_id=sid, delivery_status=status, delivery_error=""):
                adopted += 1
                log.info("Message %s was handed to Twilio before its worker stopped: %s", message.pk, sid)
        elif claim.update(delivery_status=DeliveryStatus.PENDING):
            again += 1
    return adopted, again


def _sent_at_twilio(message: Message) -> tuple[str, str] | None:
    """The SID and status of a message Twilio has that matches `message` and that we have recorded
    for no other message: to and from the same numbers, the same text, created since its claim."""
    if not (message.session.contact and message.session.contact.phone and message.delivery_claimed_at):
        return None
    to, from_ = _addresses(message)
    since = message.delivery_claimed_at - timedelta(minutes=1)  # clocks of two machines
    # Newest first; a day's messages between two numbers fit in a page.
    candidates = [
        record
        for record in twilio_client().messages.list(to=to, from_=from_, limit=50)
        if record.sid
        and record.date_created is not None
        and record.date_created >= since
        and (record.body or "").endswith(message.content)  # trial accounts prefix a notice
    ]
    known = set(
        Message.objects.filter(provider="twilio", external_id__in=[r.sid for r in candidates]).values_list(
            "external_id", flat=True
        )
    )
    for record in reversed(candidates):  # oldest first: the first send is the one to adopt
        if record.sid not in known:
            return str(record.sid), TWILIO_STATUSES.get(str(record.status or ""), DeliveryStatus.QUEUED)
    return None


def wait_for_reply(inbound_id: int, timeout: float) -> Message | None:
    """The reply to `inbound_id`, waiting up to `timeout` seconds for it to be stored."""
    deadline = time.monotonic() + timeout
    while True:
        reply = Message.objects.filter(in_reply_to_id=inbound_id).first()
        if reply is not None or time.monotonic() >= deadline:
            return reply
        time.sleep(0.05)


# Set on a voice reply when it is spoken: the inbound turn whose answer carried it.
SPOKEN_FOR = "spokenFor"


def say_replies(
    session_id: Any, inbound_id: int | None, *, wait: float, redelivered: bool = False
) -> list[str]:
    """Voice: the replies to speak on this turn, oldest first, each handed out once.

    Waits up to `wait` seconds for the reply to `inbound_id`; replies not ready in time are spoken
    on the caller's next turn. A redelivered turn (Twilio retries a request whose answer it did not
    get, so the caller heard none of it) gets the replies its first delivery handed out again,
    before any that became ready since.
    """
    if inbound_id is not None and wait > 0:
        wait_for_reply(inbound_id, wait)
    outbound = Message.objects.filter(session_id=session_id, direction=Direction.OUTBOUND)
    with transaction.atomic():
        unspoken = list(
            outbound.select_for_update()
            .filter(delivery_status=DeliveryStatus.NONE, role__in=[Role.AGENT, Role.STAFF])
            .order_by("created_at", "id")
        )
        for message in unspoken:
            message.delivery_status = DeliveryStatus.SENT
            message.metadata = {**message.metadata, SPOKEN_FOR: inbound_id}
        Message.objects.bulk_update(unspoken, ["delivery_status", "metadata"])
    spoken_before: list[Message] = []
    if redelivered and inbound_id is not None:
        spoken_before = list(
            outbound.filter(**{f"metadata__{SPOKEN_FOR}": inbound_id})
            .exclude(pk__in=[m.pk for m in unspoken])
            .order_by("created_at", "id")
        )
    return [m.content for m in [*spoken_before, *unspoken] if m.content]
