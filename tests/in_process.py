"""Calling the product's WSGI application in the test process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core import signals
from django.db import close_old_connections


@contextlib.contextmanager
def connection_kept_open() -> Iterator[None]:
    """Calling the WSGI app fires request_started/finished, which would close the test's database
    connection (and with it its transaction); Django's test client disconnects the same handler."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
