"""Periodic tasks of the delivery app."""

from celery import shared_task

from delivery.services import outbox_purge_done, outbox_relay


@shared_task(ignore_result=True)
def outbox_sweep_task() -> int:
    """Send outbox messages the broker did not take, or whose task did not finish in time."""
    sent = 0
    while True:
        batch = outbox_relay()
        sent += batch
        if batch < 500:
            break
    outbox_purge_done()
    return sent
