"""Gunicorn's settings file, read from the working directory (`gunicorn config.wsgi:application`
from the project's root): it starts the publish relay beside the workers (docs/publish-relay.md).

Command-line options still choose workers, bind address and the rest.
"""

from __future__ import annotations

from typing import Any


def on_starting(server: Any) -> None:
    # Before any worker is forked, so every worker inherits the pipe's write end.
    from sessions_app import publish_relay

    publish_relay.start()


def on_exit(server: Any) -> None:
    from sessions_app import publish_relay

    publish_relay.stop()
