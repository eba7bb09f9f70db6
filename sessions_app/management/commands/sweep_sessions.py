from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sessions_app.lifecycle.sweep import sweep_sessions


class Command(BaseCommand):
    help = (
        "Run the lifecycle sweep once now (abandon quiet sessions, archive old ended ones, purge "
        "expired archived ones when SESSION_PURGE_AFTER is set)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = sweep_sessions()
        self.stdout.write(f"abandoned: {result.abandoned}")
        self.stdout.write(f"archived: {result.archived}")
        self.stdout.write(f"purged: {result.purged}")
        for from_status, count in sorted(result.moved_from.items()):
            self.stdout.write(f"  from {from_status}: {count}")
