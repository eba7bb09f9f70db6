"""What a server process loads at start, so its first requests do not wait for it.

Django loads the URL configuration, and with it every view module, on the first request; Channels
builds the channel layer (importing channels-redis and its codecs) on the first broadcast. Together
that was ~200 ms on each worker's first inbound message, and every request queued behind it: right
after a deploy or a worker restart, the first second of traffic waited hundreds of milliseconds
(bench/realtime.py). Neither step touches the network: the database and Redis are still connected
lazily, so a process starts even while they are down.
"""

from __future__ import annotations

from channels.layers import get_channel_layer
from django.urls import get_resolver


def warm_up() -> None:
    get_resolver().url_patterns  # noqa: B018 - evaluating it imports every URL module and view
    get_channel_layer()
