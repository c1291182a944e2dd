"""WebSocket URL routes."""

from django.urls import path

from realtime.consumers import StreamConsumer

websocket_urlpatterns = [
    path("ws/streams/<slug:slug>/", StreamConsumer.as_asgi()),
]
