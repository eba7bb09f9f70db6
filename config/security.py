"""Start-up lines about settings that do not stop the process but change what it does: whether the
HTTPS settings are on (see README "Production"), and whether Twilio's webhooks can be accepted."""

from __future__ import annotations

import logging

from django.conf import settings

log = logging.getLogger("config.security")


def log_https_settings() -> None:
    # A process without DEBUG serving plain http is worth a warning; a local DEBUG run is not.
    level = logging.INFO if settings.HTTPS_ONLY or settings.DEBUG else logging.WARNING
    log.log(level, "%s", settings.HTTPS_STARTUP_NOTE)


def log_twilio_settings() -> None:
    # Not a refusal to start: the API, the staff pages and the worker work without Twilio. But
    # without the token no signature can be checked, so every webhook would be refused.
    if not settings.TWILIO_AUTH_TOKEN:
        log.warning(
            "TWILIO_AUTH_TOKEN is not set: every Twilio webhook will be refused (403), "
            "because no signature can be checked"
        )
    elif settings.TWILIO_ACCOUNT_SID and not settings.PUBLIC_BASE_URL:
        # Twilio needs an absolute URL to call back; without one, sent replies stay "queued".
        log.warning(
            "PUBLIC_BASE_URL is not set: replies are sent without a status callback, so their "
            "delivery status stays queued"
        )
