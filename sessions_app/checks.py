"""System checks that need the database (`manage.py check --database default`, and every `migrate`).

settings.py refuses a SESSION_REUSE_WINDOW longer than SESSION_ABANDON_AFTER, and `Channel.clean`
refuses to save a channel whose reuse window outlasts its own abandon-after. A channel that overrides
one value and inherits the other can still come to conflict later, when the setting it inherits
changes: this check reports those rows, by the same rule (`Channel.reuse_window_conflict`).

A warning, not an error: an error would stop `migrate`, and with it `run.py serve`, so the admin
page where the channel is fixed could not be reached. The sweep logs the same warning (sweep.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError, router

from sessions_app.models import Channel


def _source(own: int | None, setting: str) -> str:
    return "is the channel's own" if own is not None else f"comes from {setting}"


@register(Tags.database)
def check_channel_reuse_windows(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if databases is None:  # database checks run only when asked to (migrate, check --database)
        return []
    errors: list[CheckMessage] = []
    for alias in databases:
        if not router.allow_migrate_model(alias, Channel):
            continue
        try:
            # Few rows: one per Twilio number or chat surface.
            channels = list(
                Channel.objects.using(alias).only("kind", "address", "name", "reuse_window", "abandon_after")
            )
        except DatabaseError:
            # Not migrated yet: `migrate` runs the checks before it creates or alters the table.
            continue
        for channel in channels:
            conflict = channel.reuse_window_conflict()
            if conflict is None:
                continue
            reuse = int(channel.effective_reuse_window.total_seconds())
            abandon = channel.effective_abandon_after
            reuse_from = _source(channel.reuse_window, "SESSION_REUSE_WINDOW")
            abandon_from = _source(channel.abandon_after, "SESSION_ABANDON_AFTER")
            errors.append(
                Warning(
                    # printed after str(channel), e.g. "SMS +15005550006: (sessions_app.W001) channel id 3: …"
                    f"channel id {channel.pk}: {conflict}",
                    hint=(
                        f"Its reuse window ({reuse}s) {reuse_from}; its abandon-after ({abandon}s) "
                        f"{abandon_from}. "
                        "In admin under Channels, set this channel's own abandon_after "
                        f"(at least {reuse}, or 0 to never abandon) or reuse_window (at most {abandon}), "
                        "or change the setting."
                    ),
                    obj=channel,
                    id="sessions_app.W001",
                )
            )
    return errors
