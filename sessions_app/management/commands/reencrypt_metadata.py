"""Rewrite every session's metadata with the newest key in FIELD_ENCRYPTION_KEYS.

Batches in primary-key order, one transaction each, so it can be stopped and restarted at any
point: rows already under the newest key are skipped, and `--after ID` starts past a given id.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.db.models.functions import Cast

from sessions_app.models import Session
from sessions_app.privacy import crypto


def reencrypt_batch(after: uuid.UUID | None, batch_size: int) -> tuple[int, int, uuid.UUID | None]:
    """(rewritten, already current, last id seen) for the next `batch_size` sessions after `after`."""
    with transaction.atomic():
        rows = (
            Session.objects.select_for_update()
            .order_by("pk")
            .annotate(token=Cast("metadata", models.TextField()))
        )
        if after is not None:
            rows = rows.filter(pk__gt=after)
        batch = list(rows.values_list("pk", "token")[:batch_size])
        rotated = []
        for pk, token in batch:
            if token is None or crypto.is_current(token):
                continue
            try:
                rotated.append(Session(pk=pk, metadata=crypto.rotate(token)))
            except crypto.DecryptionError as exc:
                raise CommandError(
                    f"Session {pk}: metadata cannot be decrypted: {exc}. Batches before it are done; "
                    f"add the missing key to FIELD_ENCRYPTION_KEYS and run again"
                    + (f" (or resume with --after {after})" if after else "")
                ) from None
        # One UPDATE for the batch; the tokens are written as they are (`Ciphertext`).
        Session.objects.bulk_update(rotated, ["metadata"])
    return len(rotated), len(batch) - len(rotated), batch[-1][0] if batch else None


class Command(BaseCommand):
    help = "Re-encrypt every session's metadata with the newest key in FIELD_ENCRYPTION_KEYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (500).")
        parser.add_argument("--after", type=uuid.UUID, default=None, help="Start after this session id.")

    def handle(self, *args: Any, batch_size: int, after: uuid.UUID | None, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        total_rewritten = total_current = 0
        while True:
            rewritten, current, last = reencrypt_batch(after, batch_size)
            if last is None:
                break
            total_rewritten += rewritten
            total_current += current
            after = last
            self.stdout.write(
                f"{total_rewritten + total_current} sessions checked, {total_rewritten} re-encrypted, "
                f"{total_current} already on the newest key (resume with --after {last})"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {total_rewritten} re-encrypted, {total_current} already on the newest key."
            )
        )
