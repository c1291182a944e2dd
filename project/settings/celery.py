"""Celery: at-least-once delivery (acks late, requeue on a lost worker) with idempotent tasks.

Work reaches the broker through the transactional outbox (``delivery``); a task that keeps failing
is retried with backoff and then dead-lettered (``delivery.reliable``).
"""

from delivery.queues import task_queues
from project.settings.environment import (
    CELERY_BROKER_URL,
    CELERY_VISIBILITY_TIMEOUT,
    CHORUS_PUBLISH_REDRIVE_SECONDS,
    CHORUS_REACTION_FLUSH_SECONDS,
    CHORUS_SAGA_STALL_SECONDS,
    CHORUS_TASK_QUEUE,
    OUTBOX_SWEEP_SECONDS,
)

CELERY_BROKER_URL = CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = CHORUS_TASK_QUEUE
CELERY_TASK_QUEUES = task_queues(CHORUS_TASK_QUEUE)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing happens from the outbox relay: fail fast and leave the row for the next sweep rather
# than block a request while the broker is down.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacked task (its worker died) is handed out again after this many seconds...
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # ...by a sweep that, with kombu's defaults, runs only every 10 x 10 s: scan on every tick.
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1,
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes every connection, and in a prefork child the whole psycopg pool,
# before and after each task (celery/celery#10554): a new PostgreSQL connection per task, about
# 5 ms of every comment's way to its subscribers. With a reuse count it only recycles them every
# so many tasks; ``project.celery`` hands connections back to the pool at each task boundary
# instead (and drops broken ones), as Django does at the end of a request.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULE = {
    "delivery-outbox-sweep": {
        "task": "delivery.tasks.outbox_sweep_task",
        "schedule": OUTBOX_SWEEP_SECONDS,
    },
    "comments-pending-redrive": {
        "task": "comments.tasks.comments_pending_redrive_task",
        "schedule": max(1.0, CHORUS_PUBLISH_REDRIVE_SECONDS / 2),
    },
    "sagas-resume-stalled": {
        "task": "sagas.tasks.saga_resume_stalled_task",
        "schedule": max(1.0, CHORUS_SAGA_STALL_SECONDS / 3),
    },
    "reactions-flush-taps": {
        "task": "reactions.tasks.reaction_taps_flush_task",
        "schedule": CHORUS_REACTION_FLUSH_SECONDS,
    },
}

# Retry policy of every task built on delivery.reliable.ReliableTask. The longest backoff stays
# far below the visibility timeout, or a waiting retry would be handed out twice.
