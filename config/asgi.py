"""ASGI entry point: Django over HTTP, the Phoenix-protocol socket over WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs the app registry loaded above
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.warmup import warm_up  # noqa: E402
from sessions_app.realtime.lifespan import lifespan  # noqa: E402
from sessions_app.realtime.routing import websocket_urlpatterns  # noqa: E402

warm_up()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        "lifespan": lifespan,
    }
)
