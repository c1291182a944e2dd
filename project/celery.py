"""The Celery application; tasks are discovered in each app's ``tasks.py``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("chorus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every worker also records what reaches the dead-letter queue (see delivery/worker.py).
from delivery.worker import DeadLetterConsumer  # noqa: E402

app.steps["consumer"].add(DeadLetterConsumer)
