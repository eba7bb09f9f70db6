"""Twilio's webhooks. Each view: signature, parse, one call into the ingest service, TwiML."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import Gather, VoiceResponse

from sessions_app.delivery.outbound import record_delivery_status, say_replies
from sessions_app.ingest.rule import record_phone_message
from sessions_app.models import ChannelKind
from webhooks.twilio.parsing import (
    BadWebhook,
    parse_call,
    parse_message,
    parse_status,
    parse_turn,
    speech_message,
)
from webhooks.twilio.signature import twilio_signature_required

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
GREETING = "Hello, thanks for calling. How can we help you today?"
NEXT_PROMPT = "Thank you. Is there anything else?"
NOTHING_HEARD = "Sorry, I did not catch that."
GOODBYE = "We did not hear anything. Goodbye."


def twiml(body: str) -> HttpResponse:
    return HttpResponse(body, content_type="text/xml")


def twilio_webhook(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST only, CSRF-exempt (Twilio signs instead), signed, 400 on bad input, 503 on a database outage."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return view(request)
        except BadWebhook as exc:
            # The field's name only: the problem text may quote the rejected value (a number).
            log.info("Rejected %s: bad %s field", request.path, exc.field)
            return HttpResponse(f"{exc}\n", status=400, content_type="text/plain")
        except (OperationalError, InterfaceError):
            # The transaction rolled back as a whole; Twilio may retry and nothing is half-written.
            log.exception("Database unavailable while handling %s", request.path)
            response = HttpResponse(
                "Database unavailable, try again\n", status=503, content_type="text/plain"
            )
            response["Retry-After"] = "5"
            return response

    return csrf_exempt(require_POST(twilio_signature_required(wrapper)))


def _message(request: HttpRequest, kind: str) -> HttpResponse:
    parsed = parse_message(request.POST, kind)
    record_phone_message(
        kind=kind,
        to=parsed.to,
        from_phone=parsed.from_phone,
        inbound=parsed.inbound,
        whatsapp_id=parsed.whatsapp_id,
        profile_name=parsed.profile_name,
    )
    return twiml(EMPTY_TWIML)


@twilio_webhook
def sms(request: HttpRequest) -> HttpResponse:
    return _message(request, ChannelKind.SMS)


@twilio_webhook
def whatsapp(request: HttpRequest) -> HttpResponse:
    return _message(request, ChannelKind.WHATSAPP)


def _gather(response: VoiceResponse, turn: int, prompt: str) -> VoiceResponse:
    action = f"{reverse('twilio-voice-gather')}?turn={turn}"
    gather = Gather(input="speech", action=action, method="POST", speech_timeout="auto")
    gather.say(prompt)
    response.append(gather)
    response.say(GOODBYE)
    return response


@twilio_webhook
def voice(request: HttpRequest) -> HttpResponse:
    """A call starts: greet and listen. Each answer arrives at the gather webhook as one turn."""
    call = parse_call(request.POST)
    log.info("Call %s started", call.call_sid)
    return twiml(str(_gather(VoiceResponse(), 1, GREETING)))


@twilio_webhook
def voice_gather(request: HttpRequest) -> HttpResponse:
    turn = parse_turn(request.GET.get("turn"))
    call = parse_call(request.POST)
    inbound = speech_message(request.POST, call, turn)
    if inbound is None:
        return twiml(str(_gather(VoiceResponse(), turn, NOTHING_HEARD)))
    result = record_phone_message(
        kind=ChannelKind.VOICE, to=call.to, from_phone=call.from_phone, inbound=inbound
    )
    # The agent's answer to this turn if it comes within the bounded wait, plus any earlier answer
    # that missed its own turn; otherwise it is spoken on the next turn. A redelivered turn is
    # answered as its first delivery was.
    replies = say_replies(
        result.session.pk, result.message.pk, wait=settings.VOICE_REPLY_WAIT, redelivered=result.duplicate
    )
    return twiml(str(_gather(VoiceResponse(), turn + 1, " ".join([*replies, NEXT_PROMPT]))))


@twilio_webhook
def message_status(request: HttpRequest) -> HttpResponse:
    """Twilio's status callback for a message we sent: queued, sent, delivered, failed, undelivered."""
    update = parse_status(request.POST)
    if not record_delivery_status(update.sid, update.status, update.error_code):
        log.info("Status %s for message %s, which is not one of ours", update.status, update.sid)
    return HttpResponse(status=204)
