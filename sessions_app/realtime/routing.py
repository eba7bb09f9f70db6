from django.urls import path

from sessions_app.realtime.consumer import PhoenixSocketConsumer

websocket_urlpatterns = [
    path("socket/websocket", PhoenixSocketConsumer.as_asgi()),
]
