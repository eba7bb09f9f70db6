"""The ASGI lifespan protocol: at shutdown the channel layer closes this loop's connections.

channels-postgres's pools must be closed on their own loop before it ends (postgres_layer.py);
channels-redis's layer has nothing to close here and is left alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer


async def lifespan(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            layer = get_channel_layer()
            close = getattr(layer, "close_pools", None)
            if close is not None:
                await close()
            await send({"type": "lifespan.shutdown.complete"})
            return
