"""Everything held about a person, as JSON (a data-access request)."""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from sessions_app.privacy.erasure import ContactNotFound, export_contacts, find_contacts
from sessions_app.privacy.fields import EncryptedValueError


class Command(BaseCommand):
    help = "Write everything held about a contact (by +E.164 phone number or contact id) as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("contact", help="A phone number in E.164 (+15551234567) or a contact id.")
        parser.add_argument(
            "--output", "-o", default="", help="Write to this file (owner-only) instead of stdout."
        )

    def handle(self, *args: Any, contact: str, output: str, **options: Any) -> None:
        try:
            data = export_contacts(find_contacts(contact))
        except (ContactNotFound, ValueError, EncryptedValueError) as exc:
            raise CommandError(str(exc)) from None
        text = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2) + "\n"
        if not output:
            self.stdout.write(text, ending="")
            return
        # The file holds personal data: readable by its owner only, like the local secrets.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        self.stderr.write(f"Wrote {len(data['contacts'])} contact(s) to {output}")
