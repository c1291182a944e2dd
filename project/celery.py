"""The Celery application; tasks are discovered in each app's ``tasks.py``."""

import os

from celery import Celery, signals
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("chorus")
# The current app in every thread (request threads, the fast lane's), not only in this one: code
# below the composition root sends tasks through ``celery.current_app``.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every worker also records what reaches the dead-letter queue (see delivery/worker.py). Named by
# import string, so loading the Celery app does not import delivery (whose services send through it).
app.steps["consumer"].add("delivery.worker:DeadLetterConsumer")


@signals.worker_init.connect
def _freeze_startup_heap(**_: object) -> None:
    """The worker has loaded its tasks and not yet forked its pool: prefork children inherit the
    frozen heap without a collection of their own touching (and so copying) every inherited page."""
    from project.process_tuning import freeze_startup_heap

    freeze_startup_heap()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _return_database_connections(sender: object = None, **_: object) -> None:
    """Give the connection back to the pool between tasks, as Django does between requests.

    Also drops a connection an error left unusable, so the next task gets a healthy one. A task
    applied eagerly runs inside its caller's transaction, which must stay open.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    close_old_connections()
