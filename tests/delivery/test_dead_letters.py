"""Dead letters: replay idempotency, the admin pages and actions, and the ``dlq`` command."""

import io
import uuid

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from comments.models import Comment
from comments.services import PUBLISH_TASK
from delivery.models import DeadLetter, DeadLetterStatus, OutboxMessage
from delivery.services import dead_letter_record, dead_letter_replay
from realtime.models import Stream, StreamEvent
from tests.conftest import ApiUser, Stack
from tests.factories import UserFactory
from tests.support.api import post_comment, wait_published
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _letter(task: str = PUBLISH_TASK, **kwargs) -> DeadLetter:
    return dead_letter_record(
        message_id=str(uuid.uuid4()),
        task_name=task,
        args=[],
        kwargs=kwargs or {"comment_id": str(uuid.uuid4())},
        queue="chorus-test",
        failure={
            "exception_type": "builtins.ValueError",
            "exception_message": "boom <b>",
            "traceback": "Traceback (most recent call last):\n  ValueError: boom",
            "attempts": 3,
            "first_failed_at": "2026-01-01T00:00:00+00:00",
            "last_failed_at": "2026-01-01T00:01:00+00:00",
        },
        routed_by="worker",
    )


def test_replay_after_a_partial_success_still_has_one_effect(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A dead letter for a task whose effect already happened replays as a no-op."""
    comment_id = post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "once").json()["id"]
    wait_published([comment_id])
    letter = _letter(comment_id=comment_id)

    assert dead_letter_replay(dead_letter_id=letter.id) is not None
    replayed = DeadLetter.objects.get(id=letter.id).replayed_message_id
    assert replayed is not None
    message = OutboxMessage.objects.get(message_id=replayed)
    wait_until(lambda: OutboxMessage.objects.get(id=message.id).done_at, timeout=20, what="the replayed task")
    assert dead_letter_replay(dead_letter_id=letter.id) is None  # a second replay is refused

    sentinel = post_comment(http, live.nodes[0].http, stream.slug, api_user.headers, "next").json()["id"]
    wait_published([sentinel])
    assert Comment.objects.get(id=comment_id).seq == 1
    assert StreamEvent.objects.filter(stream=stream).count() == 2


def test_recording_the_same_dead_letter_twice_keeps_one_row(transactional_db: None) -> None:
    letter = _letter()
    again = dead_letter_record(
        message_id=letter.message_id,
        task_name=letter.task_name,
        args=[],
        kwargs={},
        queue="",
        failure={},
        routed_by="broker",
    )
    assert again.id == letter.id
    assert DeadLetter.objects.count() == 1


@pytest.fixture
def admin_client_logged_in(client: Client, transactional_db: None) -> Client:
    admin = UserFactory.create(is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_admin_lists_filters_and_counts_dead_letters(admin_client_logged_in) -> None:
    open_letter, other = _letter(), _letter(task="other.task")
    dead_letter_replay(dead_letter_id=other.id)
    page = admin_client_logged_in.get("/admin/delivery/deadletter/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-status="open">1<' in html and 'data-status="replayed">1<' in html
    filtered = admin_client_logged_in.get("/admin/delivery/deadletter/", {"status__exact": "open"}).content.decode()
    assert f"/admin/delivery/deadletter/{open_letter.id}/change/" in filtered
    assert f"/admin/delivery/deadletter/{other.id}/change/" not in filtered
    searched = admin_client_logged_in.get("/admin/delivery/deadletter/", {"q": "other.task"}).content.decode()
    assert f"/admin/delivery/deadletter/{other.id}/change/" in searched
    by_task = admin_client_logged_in.get("/admin/delivery/deadletter/", {"task_name": PUBLISH_TASK}).content.decode()
    assert f"/admin/delivery/deadletter/{other.id}/change/" not in by_task


def test_admin_detail_shows_payload_and_escaped_traceback(admin_client_logged_in) -> None:
    letter = _letter()
    html = admin_client_logged_in.get(f"/admin/delivery/deadletter/{letter.id}/change/").content.decode()
    assert letter.kwargs["comment_id"] in html
    assert "ValueError: boom" in html
    assert "boom &lt;b&gt;" in html


def test_admin_bulk_replay_and_discard(admin_client_logged_in) -> None:
    first, second, third = _letter(), _letter(), _letter()
    url = "/admin/delivery/deadletter/"
    response = admin_client_logged_in.post(
        url, {"action": "replay_selected", "_selected_action": [first.id, second.id]}, follow=True
    )
    assert "2 dead letter(s) replayed" in response.content.decode()
    response = admin_client_logged_in.post(
        url, {"action": "discard_selected", "_selected_action": [second.id, third.id]}, follow=True
    )
    assert "1 dead letter(s) discarded" in response.content.decode()
    assert "1 skipped" in response.content.decode()
    statuses = dict(DeadLetter.objects.values_list("id", "status"))
    assert statuses == {first.id: "replayed", second.id: "replayed", third.id: "discarded"}
    assert OutboxMessage.objects.filter(task_name=PUBLISH_TASK).count() == 2


def test_non_staff_cannot_reach_dead_letters(client: Client, transactional_db: None) -> None:
    client.force_login(UserFactory.create())
    assert client.get("/admin/delivery/deadletter/").status_code == 302


def _dlq(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("dlq", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_dlq_list_show_and_stats(transactional_db: None) -> None:
    letter = _letter()
    code, out, _ = _dlq("list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "STATUS", "TASK"]
    assert f"{letter.id}  " in out and "ValueError" in out
    code, out, _ = _dlq("show", str(letter.id))
    assert code == 0 and "traceback:" in out and letter.kwargs["comment_id"] in out
    code, out, _ = _dlq("stats")
    assert code == 0 and "open" in out and " 1" in out
    code, _, err = _dlq("show", "999999")
    assert code == 1 and "no dead letter" in err
    code, out, _ = _dlq("list", "--status", "discarded")
    assert code == 0 and out.strip() == "no dead letters"


def test_dlq_replay_and_discard_exit_codes(transactional_db: None) -> None:
    a, b, c = _letter(), _letter(task="x.task"), _letter(task="x.task")
    code, out, _ = _dlq("replay", str(a.id))
    assert code == 0 and out.strip() == f"replayed 1: {a.id}"
    code, out, err = _dlq("replay", str(a.id), "424242")
    assert code == 1 and "skipped 2" in err
    code, out, _ = _dlq("discard", "--task", "x.task")
    assert code == 0 and out.strip() == f"discarded 2: {b.id} {c.id}"
    code, out, _ = _dlq("replay", "--all")
    assert code == 0 and out.strip() == "replayed 0: -"
    with pytest.raises(CommandError) as usage:
        _dlq("replay")
    assert usage.value.returncode == 2
    assert dict(DeadLetter.objects.values_list("id", "status")) == {
        a.id: DeadLetterStatus.REPLAYED,
        b.id: DeadLetterStatus.DISCARDED,
        c.id: DeadLetterStatus.DISCARDED,
    }


def test_permanent_error_is_dead_lettered_at_once_without_retries(live: Stack) -> None:
    """A task that can never succeed (a malformed id) is not retried: one attempt, then the DLQ."""
    from django.db import transaction

    from delivery.services import outbox_enqueue

    with transaction.atomic():
        outbox_enqueue(task_name=PUBLISH_TASK, kwargs={"comment_id": "not-a-uuid"})
    letter = wait_until(
        lambda: DeadLetter.objects.filter(kwargs__comment_id="not-a-uuid").first(), timeout=30, what="dead letter"
    )
    assert letter.attempts == 1
    assert letter.exception_type.endswith("PermanentError")


def test_publishing_a_comment_that_no_longer_exists_is_neither_retried_nor_dead_lettered(live: Stack) -> None:
    """The comment (or its stream) was deleted before publication: nothing to do, and no alarm."""
    from django.db import transaction

    from delivery.services import outbox_enqueue

    gone = str(uuid.uuid4())
    with transaction.atomic():
        outbox_enqueue(task_name=PUBLISH_TASK, kwargs={"comment_id": gone})
    wait_until(lambda: f"comment {gone} no longer exists" in live.worker.log_text(), timeout=30, what="the task")
    assert not DeadLetter.objects.exists()
    assert "retry in" not in live.worker.log_text().split(gone)[-1]
