"""Periodic tasks of the delivery app."""

from celery import shared_task

from delivery.services import outbox_purge_dispatched, outbox_relay

# Rows younger than this are left to the relay that runs on their own transaction's commit.
SWEEP_GRACE_SECONDS = 1.0


@shared_task(ignore_result=True)
def outbox_sweep_task() -> int:
    """Relay outbox messages the broker did not take at commit time (it was down, or we crashed)."""
    sent = 0
    while True:
        batch = outbox_relay(older_than_seconds=SWEEP_GRACE_SECONDS)
        sent += batch
        if batch < 500:
            break
    outbox_purge_dispatched()
    return sent
