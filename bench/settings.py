"""Settings of the benchmark's ASGI nodes: production settings plus the naive baseline endpoints."""

from project.settings import *  # noqa: F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.naive"]
ROOT_URLCONF = "bench.urls"
