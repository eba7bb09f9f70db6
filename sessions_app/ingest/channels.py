"""The channel an inbound message arrives on: found, provisioned with defaults if new, remembered.

Channels are read on every inbound message and change only when staff edit one in admin, so each
process keeps them for `CHANNEL_CACHE_TTL` in its own cache (`CACHES["process"]`, which pickles:
every caller gets a copy of its own). An edit applies at once in the process that saved it and
within the TTL everywhere else (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from sessions_app.models import Channel
from sessions_app.phones import mask_phone

log = logging.getLogger(__name__)

CHANNEL_CACHE_TTL = timedelta(seconds=30)


def _cache() -> Any:
    return caches["process"]


def _key(kind: str, address: str, surface: str = "") -> str:
    return f"channel:{kind}:{address}:{surface}"


def channel_for(kind: str, address: str = "", surface: str = "") -> Channel:
    """The channel for traffic of `kind` sent to `address` (or for a seed `surface`), provisioned
    with defaults if new. Each surface's channel holds that surface's lifecycle thresholds."""
    cached = cached_channel(kind, address, surface)
    if cached is not None:
        return cached
    channel, created = Channel.objects.get_or_create(kind=kind, address=address, surface=surface)
    if created:
        log.info(
            "Provisioned a new %s channel for %s with default settings", kind, mask_phone(address) or "-"
        )
    # Remembered only once committed: a channel provisioned by a transaction that then rolls back (a
    # database error, a test) must not outlive it here.
    read_at = timezone.now()
    transaction.on_commit(lambda: _cache().set(_key(kind, address, surface), (read_at, channel), None))
    return channel


def cached_channel(kind: str, address: str = "", surface: str = "") -> Channel | None:
    """This process's copy of the channel, while it is fresh; None when it must be read again."""
    entry: tuple[datetime, Channel] | None = _cache().get(_key(kind, address, surface))
    if entry is None:
        return None
    read_at, channel = entry
    # Also stale when the clock went back: the age is bounded either way.
    if timedelta(0) <= timezone.now() - read_at < CHANNEL_CACHE_TTL:
        return channel
    return None


def forget_cached_channels(**kwargs: Any) -> None:
    _cache().clear()


def set_reuse_window(channel: Channel, seconds: int) -> Channel:
    """Staff chose `channel`'s reuse window (the window report page's button), checked by the rule
    admin and the API check (`Channel.clean`: not longer than abandon-after); raises ValidationError."""
    if seconds < 0:
        raise ValidationError({"reuse_window": "A window is 0 seconds or more."})
    channel.reuse_window = seconds
    channel.clean()
    channel.save(update_fields=["reuse_window"])
    log.info("Channel %s: reuse window set to %ss", channel.pk, seconds)
    return channel


post_save.connect(forget_cached_channels, sender=Channel, dispatch_uid="ingest.forget_channels_on_save")
post_delete.connect(forget_cached_channels, sender=Channel, dispatch_uid="ingest.forget_channels_on_delete")
