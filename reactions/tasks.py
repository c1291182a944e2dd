"""Celery tasks of the reactions app."""

from celery import shared_task

from reactions.services.counter_flush import reaction_taps_flush


@shared_task(acks_late=True, ignore_result=True, expires=30)
def reaction_taps_flush_task() -> int:
    """Scheduled by beat; a missed, repeated or concurrent run is harmless (the flush merges)."""
    return reaction_taps_flush()
