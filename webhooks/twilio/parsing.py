"""Turn Twilio's form fields into the ingest service's input, or say which field is wrong."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import QueryDict

from sessions_app.ingest.rule import InboundMessage
from sessions_app.models import ChannelKind
from sessions_app.phones import InvalidPhoneNumber, normalize_phone

PROVIDER = "twilio"
MAX_MEDIA = 10
WHATSAPP_MAX_BODY_LENGTH = 4096
MAX_SPEECH_LENGTH = 4096


class BadWebhook(ValueError):
    """A request we cannot store; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


@dataclass(frozen=True)
class ParsedMessage:
    to: str
    from_phone: str
    inbound: InboundMessage
    whatsapp_id: str = ""
    profile_name: str = ""


def _required(form: QueryDict, name: str) -> str:
    value = (form.get(name) or "").strip()
    if not value:
        raise BadWebhook(name, "required field is missing or empty")
    return value


def _phone(form: QueryDict, name: str) -> str:
    raw = _required(form, name)
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumber as exc:
        raise BadWebhook(name, f"{raw!r} is {exc}") from None


def _media(form: QueryDict) -> list[dict[str, str]]:
    raw = (form.get("NumMedia") or "0").strip()
    try:
        count = int(raw)
    except ValueError:
        raise BadWebhook("NumMedia", f"must be a whole number, not {raw!r}") from None
    if not 0 <= count <= MAX_MEDIA:
        raise BadWebhook("NumMedia", f"must be between 0 and {MAX_MEDIA}, not {count}")
    items = []
    for index in range(count):
        url = _required(form, f"MediaUrl{index}")
        if not url.startswith(("https://", "http://")):
            raise BadWebhook(f"MediaUrl{index}", "must be an http(s) URL")
        items.append({"url": url, "content_type": (form.get(f"MediaContentType{index}") or "").strip()})
    return items


def parse_message(form: QueryDict, kind: str) -> ParsedMessage:
    """An inbound SMS or WhatsApp message."""
    sid = _required(form, "MessageSid")
    from_phone = _phone(form, "From")
    to = _phone(form, "To")
    body = form.get("Body") or ""
    limit = settings.SMS_MAX_BODY_LENGTH if kind == ChannelKind.SMS else WHATSAPP_MAX_BODY_LENGTH
    if len(body) > limit:
        raise BadWebhook("Body", f"is {len(body)} characters long; at most {limit} are accepted")
    media = _media(form)
    metadata: dict[str, str] = {"source": "webhook"}
    if account := form.get("AccountSid"):
        metadata["accountSid"] = account
    if service := form.get("MessagingServiceSid"):
        metadata["messagingServiceSid"] = service
    return ParsedMessage(
        to=to,
        from_phone=from_phone,
        inbound=InboundMessage(
            content=body, provider=PROVIDER, external_id=sid, media=media, metadata=metadata
        ),
        whatsapp_id=(form.get("WaId") or "").strip()[:32] if kind == ChannelKind.WHATSAPP else "",
        profile_name=(form.get("ProfileName") or "").strip()[:255] if kind == ChannelKind.WHATSAPP else "",
    )


@dataclass(frozen=True)
class ParsedCall:
    call_sid: str
    from_phone: str
    to: str


def parse_call(form: QueryDict) -> ParsedCall:
    return ParsedCall(
        call_sid=_required(form, "CallSid"), from_phone=_phone(form, "From"), to=_phone(form, "To")
    )


def parse_turn(raw: str | None) -> int:
    try:
        turn = int(raw or "")
    except ValueError:
        raise BadWebhook("turn", f"must be a whole number in the query string, not {raw!r}") from None
    if not 1 <= turn <= 1000:
        raise BadWebhook("turn", f"must be between 1 and 1000, not {turn}")
    return turn


def speech_message(form: QueryDict, call: ParsedCall, turn: int) -> InboundMessage | None:
    """The caller's words on this turn, or None when Twilio heard nothing."""
    speech = (form.get("SpeechResult") or "").strip()
    if not speech:
        return None
    if len(speech) > MAX_SPEECH_LENGTH:
        raise BadWebhook("SpeechResult", f"is longer than {MAX_SPEECH_LENGTH} characters")
    metadata = {"source": "webhook", "callSid": call.call_sid, "turn": turn}
    if confidence := form.get("Confidence"):
        metadata["confidence"] = confidence
    return InboundMessage(
        content=speech, provider=PROVIDER, external_id=f"{call.call_sid}:{turn}", metadata=metadata
    )


@dataclass(frozen=True)
class StatusUpdate:
    sid: str
    status: str
    error_code: str


def parse_status(form: QueryDict) -> StatusUpdate:
    """A message status callback."""
    sid = _required(form, "MessageSid")
    status = _required(form, "MessageStatus").lower()
    error_code = (form.get("ErrorCode") or "").strip()
    if error_code and not error_code.isdigit():
        raise BadWebhook("ErrorCode", f"must be a number, not {error_code!r}")
    return StatusUpdate(sid=sid, status=status, error_code=error_code)
