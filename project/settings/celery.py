"""Celery: at-least-once delivery (acks late, requeue on a lost worker) with idempotent tasks."""

from project.settings.environment import CELERY_BROKER_URL, CELERY_VISIBILITY_TIMEOUT, REACTION_FLUSH_SECONDS

CELERY_BROKER_URL = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacked task (its worker died) is handed out again after this many seconds...
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # ...by a sweep that, with kombu's defaults, runs only every 10 x 10 s: scan on every tick.
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "comments-sweep-pending": {
        "task": "comments.tasks.comment_sweep_pending_task",
        "schedule": 10.0,
    },
    "reactions-flush-taps": {
        "task": "reactions.tasks.reaction_taps_flush_task",
        "schedule": REACTION_FLUSH_SECONDS,
    },
}
