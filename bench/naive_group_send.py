"""The baseline the fan-out benchmark compares against: the Channels tutorial pattern.

One channel-layer group per stream, one consumer per socket that joins the group on connect, and a
publisher that calls ``group_send``; channels-redis then pushes one message per receiving channel
through Redis. Served as ``bench.naive_group_send:application`` only by ``bench/fanout.py``; production never
routes here.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from bench.naive_layer import naive_layer_install  # noqa: E402

naive_layer_install()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402


def naive_group(slug: str) -> str:
    return f"naive-{slug}"


class NaiveStreamConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.group = naive_group(self.scope["url_route"]["kwargs"]["slug"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def stream_event(self, event: dict) -> None:
        await self.send(text_data=event["frame"])


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/naive/<slug:slug>/", NaiveStreamConsumer.as_asgi())]))
        ),
    }
)
