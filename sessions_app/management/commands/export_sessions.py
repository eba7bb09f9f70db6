"""Sessions to a CSV or JSON-lines file, with the session list's filters (docs/reports.md, Export)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import QueryDict
from rest_framework.exceptions import ValidationError

from sessions_app.api.filters import SessionFilter
from sessions_app.models import Session
from sessions_app.reports import export

# CLI option → the session list's query parameter (sessions_app/api/filters.py).
FILTERS = {
    "channel": "channel",
    "status": "status",
    "contact_phone": "contact_phone",
    "contact": "contact",
    "business_id": "business_id",
    "location_id": "location_id",
    "owner": "owner",
    "agent_id": "agent_id",
    "created_after": "created_after",
    "created_before": "created_before",
    "last_activity_after": "last_activity_after",
    "last_activity_before": "last_activity_before",
    "q": "q",
}
REPEATED = {"channel", "status"}


class ProgressBar:
    """A one-line bar redrawn at most ten times a second, on a terminal only."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = stream.isatty()
        self.drawn_at = 0.0

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if self.enabled and (now - self.drawn_at >= 0.1 or self.done >= self.total):
            self.drawn_at = now
            share = self.done / self.total if self.total else 1.0
            filled = int(self.WIDTH * min(share, 1.0))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {self.done:,}/{self.total:,} sessions ({share:.0%})")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")


class Command(BaseCommand):
    help = "Export the sessions the filters select (the API's session-list filters) as CSV or JSON lines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=export.FORMATS, default="csv")
        parser.add_argument("--output", "-o", required=True, help="The file to write (owner-only).")
        parser.add_argument("--transcripts", action="store_true", help="Each session's messages (jsonl).")
        for option, param in FILTERS.items():
            flag = "--" + option.replace("_", "-")
            if option in REPEATED:
                parser.add_argument(flag, action="append", default=[], help=f"?{param}= (repeatable)")
            else:
                parser.add_argument(flag, default=None, help=f"?{param}=")

    def handle(self, *args: Any, **options: Any) -> None:
        fmt, output = options["format"], options["output"]
        if options["transcripts"] and fmt != "jsonl":
            raise CommandError("--transcripts needs --format jsonl.")
        params = QueryDict(mutable=True)
        for option, param in FILTERS.items():
            value = options[option]
            if option in REPEATED:
                params.setlist(param, value)
            elif value is not None:
                params[param] = value
        filters = SessionFilter(data=params, queryset=Session.objects.all())
        try:
            if not filters.is_valid():
                raise CommandError(f"Bad filters: {filters.errors.as_text()}")
            sessions = filters.qs
        except ValidationError as exc:
            raise CommandError(f"Bad filters: {exc.detail}") from None
        progress = ProgressBar(sessions.count(), sys.stderr)
        # Personal data: readable by its owner only, like export_contact's file.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for chunk in export.chunks(
                sessions, fmt, transcripts=options["transcripts"], progress=progress.advance
            ):
                handle.write(chunk)
        progress.finish()
        self.stderr.write(f"Wrote {progress.done:,} session(s) to {output}")
