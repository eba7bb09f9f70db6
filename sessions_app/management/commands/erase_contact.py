"""Erase a person: their contact record(s), sessions and messages, in one transaction, audited."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.privacy.erasure import ContactNotFound, erase_contacts, find_contacts


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (some containers)
        return "unknown"


class Command(BaseCommand):
    help = "Erase a contact (by +E.164 phone number or contact id) with all their sessions and messages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("contact", help="A phone number in E.164 (+15551234567) or a contact id.")
        parser.add_argument(
            "--reference", default="", help="The request's reference for the audit (no personal data)."
        )
        parser.add_argument("--actor", default="", help='Who asked, for the audit (default "cli:<os user>").')

    def handle(self, *args: Any, contact: str, reference: str, actor: str, **options: Any) -> None:
        try:
            contacts = find_contacts(contact)
        except (ContactNotFound, ValueError) as exc:
            raise CommandError(str(exc)) from None
        record = erase_contacts(contacts, actor=actor or f"cli:{_os_user()}", reference=reference)
        summary = ", ".join(f"{count} {label}" for label, count in record.deleted.items())
        self.stdout.write(self.style.SUCCESS(f"Erased ({summary}); audit record {record.pk}."))
