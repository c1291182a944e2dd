"""ASGI entry point: Django for HTTP (comment posts and live taps take a fast lane first), Channels for WebSockets."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup(set_prefix=False)

from project.asgi_handler import ChorusASGIHandler  # noqa: E402

# Django's handler, with its synchronous middleware and views run on a few long-lived request
# threads in one hop per request (project/asgi_handler.py).
django_asgi_app = ChorusASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from gateway.fast_lane import FastLane  # noqa: E402
from project.process_tuning import freeze_startup_heap, shorten_gil_switch_interval  # noqa: E402
from project.server_limits import daphne_limits_install  # noqa: E402
from realtime.daphne_tuning import daphne_lifecycle, daphne_serving, daphne_tune  # noqa: E402
from realtime.node import node  # noqa: E402
from realtime.origin import browser_origin_validator  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

# Outermost: the node (realtime/node.py): the lifespan protocol that starts and stops it, the
# readiness and liveness probes, and the SIGTERM drain (realtime/drain.py).
application = node.asgi(
    ProtocolTypeRouter(
        {
            "http": FastLane(django_asgi_app),
            "websocket": browser_origin_validator(URLRouter(websocket_urlpatterns)),
        }
    )
)

if daphne_serving():
    # daphne only: its classes are patched before it builds its factories, and, as it speaks no
    # lifespan, its reactor starts and stops the node (realtime/daphne_tuning.py).
    daphne_tune()
    daphne_limits_install()
    daphne_lifecycle(start=node.start, stop=node.stop)

# Load the URLconf (and with it every view) now rather than on the first request, then take all
# of it out of the garbage collector's way (project/process_tuning.py).
get_resolver().url_patterns  # noqa: B018
freeze_startup_heap()
shorten_gil_switch_interval()
