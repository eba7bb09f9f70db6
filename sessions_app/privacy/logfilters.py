"""A logging filter that masks phone numbers in every record, whoever logged it.

Our own log lines already mask numbers with `phones.mask_phone`; this is the safety net for lines
we do not write (Django, libraries, exception messages such as an IntegrityError's DETAIL). It
masks "+" followed by 8 to 15 digits (E.164), optionally after "whatsapp:". Numbers written
without "+" are left alone: masking every long digit run would also mangle ids and timestamps.
It cannot know what a message body is, so bodies are kept out of logs by the code that logs.
"""

from __future__ import annotations

import logging
import re

from sessions_app.phones import mask_phone

E164 = re.compile(r"(?<![\w+])\+\d{8,15}(?!\d)")


def mask_phone_numbers(text: str) -> str:
    return E164.sub(lambda match: mask_phone(match.group(0)), text)


class MaskPhoneNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it to the handler's own error reporting
            return True
        masked = mask_phone_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_phone_numbers(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_phone_numbers(record.stack_info)
        return True
