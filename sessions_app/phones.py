"""Phone numbers: E.164 normalisation and the masked form used in logs."""

from __future__ import annotations

import functools
import re

import phonenumbers

# "+1" and ten ASCII digits: already E.164, and the library returns it unchanged (checked against it
# for every leading digit in tests/sessions_app/test_phones.py). Most of Twilio's traffic is in the
# North American plan, and a number not seen before costs ~25 µs to parse.
_NANP_E164 = re.compile(r"\+1[0-9]{10}")


class InvalidPhoneNumber(ValueError):
    pass


# Parsing is a good part of a webhook's cost, and the same few numbers recur: our own (every
# message's To) and whoever is in a conversation right now. Pure, so remembering is safe.
@functools.lru_cache(maxsize=10_000)
def normalize_phone(raw: str) -> str:
    """`raw` as E.164 (`+15551234567`); accepts Twilio's `whatsapp:` prefix and spacing."""
    value = (raw or "").strip()
    if value.lower().startswith("whatsapp:"):
        value = value[len("whatsapp:") :]
    if not value:
        raise InvalidPhoneNumber("empty phone number")
    if not value.startswith("+"):
        value = "+" + value.lstrip("0") if value.isdigit() else value
    if _NANP_E164.fullmatch(value):
        return value
    return _parsed_e164(value)


def _parsed_e164(value: str) -> str:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {exc}") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    # Length only, not numbering-plan validity: test numbers and new ranges must still get through.
    if not 8 <= len(e164) - 1 <= 15:
        raise InvalidPhoneNumber("a phone number has 8 to 15 digits")
    return e164


def mask_phone(phone: str) -> str:
    """`+15551234567` → `+1555•••4567`: enough to tell numbers apart in logs, not to dial them."""
    if len(phone) <= 8:
        return "•••"
    return f"{phone[:5]}•••{phone[-4:]}"
