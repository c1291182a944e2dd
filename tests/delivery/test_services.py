"""Service tier of delivery: the outbox's bookkeeping and the dead-letter store.

On the real PostgreSQL, with no broker traffic: a message is recorded in the caller's transaction
and its relay registered for after commit, which these rolled-back tests never reach, so no task
is sent. Sending itself (the relay and the sweep against a live or failing broker) is covered by
the fault tests in this directory.
"""

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from delivery.models import DeadLetter, DeadLetterStatus, OutboxMessage
from delivery.selectors import dead_letter_counts, dead_letters, outbox_open, outbox_open_oldest_age
from delivery.services import (
    RELAY_GRACE,
    dead_letter_discard,
    dead_letter_record,
    dead_letter_replay,
    outbox_enqueue,
    outbox_message_done,
    outbox_message_retrying,
    outbox_message_running,
    outbox_purge_done,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db]

TASK = "comments.tasks.comment_publish_task"


class _Abort(Exception):
    pass


def _close_to(value: Any, expected: Any, slack: timedelta = timedelta(seconds=2)) -> bool:
    return value is not None and abs(value - expected) < slack


def _letter(message_id: str = "m-1", task: str = TASK, **failure: Any) -> DeadLetter:
    return dead_letter_record(
        message_id=message_id,
        task_name=task,
        args=[1],
        kwargs={"comment_id": "c-1"},
        queue="chorus",
        failure=failure,
        routed_by="worker",
    )


# --- the outbox ----------------------------------------------------------------------------------


def test_a_task_exists_if_and_only_if_the_change_that_needs_it_commits(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    """Recorded in the caller's transaction, handed to the broker only after its commit."""
    with django_capture_on_commit_callbacks() as relays:
        message = outbox_enqueue(task_name=TASK, kwargs={"comment_id": "kept"})
    with django_capture_on_commit_callbacks() as rolled_back, pytest.raises(_Abort), transaction.atomic():
        outbox_enqueue(task_name=TASK, kwargs={"comment_id": "lost"})
        raise _Abort

    assert len(relays) == 1 and rolled_back == []
    recorded = OutboxMessage.objects.filter(kwargs__comment_id__in=["kept", "lost"])
    assert list(recorded.values_list("kwargs", flat=True)) == [{"comment_id": "kept"}]
    assert (message.dispatched_at, message.done_at, message.attempts) == (None, None, 0)
    assert _close_to(message.redrive_at, timezone.now() + RELAY_GRACE)  # the sweep waits for the relay


def test_a_running_task_holds_off_the_sweep_and_a_finished_one_is_never_sent_again(settings: Settings) -> None:
    message = outbox_enqueue(task_name=TASK)
    message_id = str(message.message_id)

    outbox_message_running(message_id=message_id, lease_seconds=30)
    assert _close_to(OutboxMessage.objects.get(id=message.id).redrive_at, timezone.now() + timedelta(seconds=30))
    outbox_message_retrying(message_id=message_id, countdown=5)
    retry_wait = timedelta(seconds=5 + settings.CHORUS_PUBLISH_REDRIVE_SECONDS)
    assert _close_to(OutboxMessage.objects.get(id=message.id).redrive_at, timezone.now() + retry_wait)

    outbox_message_done(message_id=message_id)
    done = OutboxMessage.objects.get(id=message.id)
    outbox_message_running(message_id=message_id, lease_seconds=600)  # a late report changes nothing
    outbox_message_done(message_id=message_id)

    assert done.done_at is not None
    assert OutboxMessage.objects.values_list("done_at", "redrive_at").get(id=message.id) == (
        done.done_at,
        done.redrive_at,
    )
    assert message_id not in {m.message_id for m in outbox_open()}


def test_unfinished_messages_are_listed_the_oldest_first_and_finished_ones_purged_after_a_day() -> None:
    now = timezone.now()
    old, recent, finished, long_done = (
        outbox_enqueue(task_name=f"task.{name}") for name in ("old", "recent", "finished", "long_done")
    )
    OutboxMessage.objects.filter(id=old.id).update(
        created_at=now - timedelta(minutes=10), attempts=2, last_error="down"
    )
    OutboxMessage.objects.filter(id=finished.id).update(done_at=now)
    OutboxMessage.objects.filter(id=long_done.id).update(done_at=now - timedelta(days=2))

    listed = [m for m in outbox_open() if m.task_name.startswith("task.")]
    assert [m.task_name for m in listed] == ["task.old", "task.recent"]
    assert (listed[0].attempts, listed[0].last_error) == (2, "down")
    assert "task.recent" not in {m.task_name for m in outbox_open(older_than_seconds=60)}
    assert outbox_open_oldest_age() >= 599

    assert outbox_purge_done() >= 1
    mine = {old.id, recent.id, finished.id, long_done.id}
    assert set(OutboxMessage.objects.filter(id__in=mine).values_list("id", flat=True)) == mine - {long_done.id}


# --- dead letters --------------------------------------------------------------------------------


def test_a_dead_letter_is_recorded_once_with_its_failure() -> None:
    letter = _letter(
        exception_type="builtins.ValueError",
        exception_message="boom",
        attempts=3,
        first_failed_at="2026-01-01T00:00:00+00:00",
        last_failed_at="2026-01-01T00:01:00+00:00",
    )
    again = _letter(exception_type="other", attempts=9)  # the same message dead-lettered twice

    assert again.id == letter.id
    stored = DeadLetter.objects.get(id=letter.id)
    assert (stored.exception_type, stored.attempts, stored.status) == ("builtins.ValueError", 3, DeadLetterStatus.OPEN)
    assert stored.last_failed_at is not None and stored.first_failed_at is not None
    assert stored.last_failed_at - stored.first_failed_at == timedelta(minutes=1)


def test_a_replay_queues_the_original_task_once_through_the_outbox() -> None:
    letter = _letter()

    replayed = dead_letter_replay(dead_letter_id=letter.id)
    assert dead_letter_replay(dead_letter_id=letter.id) is None  # a double click replays once
    assert dead_letter_discard(dead_letter_id=letter.id) is None

    assert replayed is not None and replayed.status == DeadLetterStatus.REPLAYED
    (message,) = OutboxMessage.objects.filter(kwargs={"comment_id": "c-1"})
    assert message.message_id == replayed.replayed_message_id
    assert (message.task_name, message.args, message.kwargs) == (TASK, [1], {"comment_id": "c-1"})


def test_a_discarded_letter_is_never_run_and_every_status_is_counted() -> None:
    before = dead_letter_counts()
    kept, discarded = _letter("m-kept"), _letter("m-discarded", task="sagas.tasks.saga_step_task")

    closed = dead_letter_discard(dead_letter_id=discarded.id)
    assert dead_letter_replay(dead_letter_id=discarded.id) is None

    assert closed is not None and closed.status == DeadLetterStatus.DISCARDED and closed.status_changed_at
    assert not OutboxMessage.objects.filter(kwargs={"comment_id": "c-1"}).exists()
    after = dead_letter_counts()
    assert {status: after[status] - before[status] for status in after} == {"open": 1, "replayed": 0, "discarded": 1}
    assert kept in dead_letters(status="open") and discarded not in dead_letters(status="open")
    assert discarded in dead_letters(task_name="sagas.tasks.saga_step_task")
