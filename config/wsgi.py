"""The WSGI application: provider webhooks through a lean handler, everything else through Django's."""

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()  # sets Django up before the next import

from config.warmup import warm_up  # noqa: E402
from webhooks.handler import WEBHOOK_PATH_PREFIX, WebhookHandler  # noqa: E402

webhook_application = WebhookHandler()
warm_up()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "").startswith(WEBHOOK_PATH_PREFIX):
        return webhook_application(environ, start_response)
    return django_application(environ, start_response)
