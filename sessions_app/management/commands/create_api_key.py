from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.api.keys import issue_key


class Command(BaseCommand):
    help = "Create an API key; prints it once, as the last word of the output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who or what uses the key, e.g. crm")
        parser.add_argument("--business", default="", help="Limit the key to this business id")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1 to 100 characters")
        business = options["business"].strip()
        if len(business) > 128:
            raise CommandError("--business must be at most 128 characters")
        key, plain = issue_key(name, business)
        scope = f"business {business}" if business else "all businesses"
        self.stdout.write(f"Created API key {key.name!r} for {scope}. It is shown only now: {plain}")
