"""The start-up line that says whether the HTTPS settings are on (see README "Production")."""

from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger("config.security")


def log_https_settings() -> None:
    # A process without DEBUG serving plain http is worth a warning; a local DEBUG run is not.
    level = logging.INFO if settings.HTTPS_ONLY or settings.DEBUG else logging.WARNING
    log.log(level, "%s", settings.HTTPS_STARTUP_NOTE)
