from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from sessions_app.ingest.window_report import BadReportQuery, ReportQuery, roll_up, window_report
from sessions_app.models import Channel


class Command(BaseCommand):
    help = (
        "The what-if window report of one channel: how many sessions each reuse window would have made "
        "of its stored inbound messages, and the gaps between them, as GET "
        "/api/v1/channels/{id}/window-report/ answers it (JSON)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", type=int, required=True, help="The channel's id (admin, Channels).")
        parser.add_argument("--windows", help="Comma-separated seconds (default 60,300,900).")
        parser.add_argument("--since", help="ISO 8601 with a zone (default: 30 days before --until).")
        parser.add_argument("--until", help="ISO 8601 with a zone (default: now).")
        parser.add_argument(
            "--roll-up",
            action="store_true",
            help="First sum up the channel's finished days, as the scheduler does every 15 minutes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        channel = Channel.objects.filter(pk=options["channel"]).first()
        if channel is None:
            raise CommandError(f"No channel {options['channel']}.")
        try:
            query = ReportQuery.parse(
                options["windows"], options["since"], options["until"], now=timezone.now()
            )
        except BadReportQuery as exc:
            raise CommandError(f"--{exc.field}: {exc}") from None
        if options["roll_up"]:
            rows = roll_up(channel)
            self.stderr.write(f"rolled up: {rows} (contact, day) row(s) written")
        report = window_report(channel, query.windows, query.since, query.until)
        self.stdout.write(json.dumps(report.as_dict()))
