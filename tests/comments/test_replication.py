"""Comment edits replicated between two regions converge, whatever the order of delivery."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pytest_django import Settings

from comments.models import Comment, CommentStatus
from comments.replication import ReplicatedEdit, vectors_concurrent
from comments.selectors import comment_history
from comments.services import comment_edit, comment_edit_outgoing, comment_replicated_edit_apply
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import UserFactory
from tests.support.databases import scratch_database_url
from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def region_b_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second, migrated database: the other region's copy of the data."""
    url = scratch_database_url("postgresql", suffix="region_b", directory=tmp_path_factory.mktemp("region_b"))
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    return url


def _region_b(url: str, ops: list[dict], tmp_path) -> dict:
    path = tmp_path / f"ops-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(ops))
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings", "CHORUS_REGION": "us"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.comments.replica_process", str(path)],
        cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _state(comment: Comment) -> dict:
    comment.refresh_from_db()
    return {
        "body": comment.body,
        "vector": comment.vector,
        "edit_id": comment.edit_id,
        "revisions": [list(r) for r in comment_history(comment=comment)],
    }


def test_concurrent_edits_in_two_regions_converge(
    region_b_url: str, stream: Stream, settings: Settings, tmp_path: Path
) -> None:
    """Both regions edit at once, twice; each applies the other's edits (one twice): same state on both."""
    settings.CHORUS_REGION = "eu"
    author = UserFactory.create()
    comment = Comment.objects.create(
        stream=stream, author=author, body="original", status=CommentStatus.PUBLISHED, idempotency_key="r"
    )
    cid = str(comment.id)
    setup = {"op": "setup", "comment_id": cid, "body": "original", "username": author.username, "slug": stream.slug}

    # round 1: concurrent edits, one in each region
    eu_1 = comment_edit_outgoing(
        comment=comment_edit(comment_id=comment.id, editor_id=author.pk, body="eu 1", expected_version=1)
    )
    us = _region_b(region_b_url, [setup, {"op": "edit", "comment_id": cid, "body": "us 1"}], tmp_path)
    us_1 = ReplicatedEdit.from_dict(us["edits"][0])
    assert vectors_concurrent(eu_1.vector, us_1.vector)

    # round 2: eu applies us 1 (twice: a duplicate delivery) and edits again; us edits again concurrently
    comment_replicated_edit_apply(edit=us_1)
    comment_replicated_edit_apply(edit=us_1)
    comment.refresh_from_db()
    eu_2 = comment_edit_outgoing(
        comment=comment_edit(comment_id=comment.id, editor_id=author.pk, body="eu 2", expected_version=comment.version)
    )
    us = _region_b(region_b_url, [{"op": "edit", "comment_id": cid, "body": "us 2"}], tmp_path)
    us_2 = ReplicatedEdit.from_dict(us["edits"][0])
    assert vectors_concurrent(eu_2.vector, us_2.vector)

    # exchange everything: us receives eu's edits in reverse order, eu receives us 2
    comment_replicated_edit_apply(edit=us_2)
    us = _region_b(
        region_b_url,
        [
            {"op": "apply", "edits": [eu_2.as_dict(), eu_1.as_dict(), eu_2.as_dict()]},
            {"op": "state", "comment_id": cid},
        ],
        tmp_path,
    )

    eu_state = _state(comment)
    assert us["state"] == eu_state
    # the rule: eu 2 had seen eu 1 and us 1 (rank 3), us 2 only us 1 (rank 2): eu 2 wins on both sides
    winner = max([eu_2, us_2], key=lambda e: e.key)
    assert winner is eu_2
    assert eu_state["body"] == winner.body
    assert eu_state["vector"] == {"eu": 2, "us": 2}
    reasons = {edit_id: reason for edit_id, _body, reason in eu_state["revisions"]}
    loser = eu_2 if winner is us_2 else us_2
    assert reasons[loser.edit_id] == "conflict_lost"
    assert {"original", "eu:1", "us:1"} <= set(reasons)


def test_a_losing_replicated_edit_is_not_undone_by_a_racing_local_edit(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A PATCH that read the comment before a losing remote edit merged its vector keeps that merge.

    The PATCH is held on the comment's row lock while the remote edit is applied and committed;
    the vector it writes must still contain the remote entry, else a later edit's vector claims
    not to have seen an edit that this region has (and a repeat of it is ignored as seen).
    """
    import threading

    import psycopg
    from django.db import transaction

    from tests.support.processes import wait_until

    comment = Comment.objects.create(
        stream=stream, author=api_user.user, body="original", status=CommentStatus.PUBLISHED, idempotency_key="k"
    )
    comment_edit(comment_id=comment.id, editor_id=api_user.user.pk, body="local 1", expected_version=1)
    remote = ReplicatedEdit(comment_id=str(comment.id), replica="aa", vector={"aa": 1}, body="remote 1")
    url = f"{live.nodes[0].http}/api/v1/comments/{comment.id}"
    answers: list[int] = []

    with transaction.atomic():
        Comment.objects.select_for_update().get(id=comment.id)  # hold the row while the PATCH arrives
        patch = threading.Thread(
            target=lambda: answers.append(
                http.patch(url, json={"body": "local 2"}, headers={**api_user.headers, "If-Match": '"2"'}).status_code
            )
        )
        patch.start()
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as watcher:

            def patch_waits_for_the_lock() -> bool:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query ILIKE %s",
                    ["%comments_comment%"],
                ).fetchone()
                return row is not None and row[0] > 0

            wait_until(patch_waits_for_the_lock, timeout=15, what="the PATCH to wait for the comment's row lock")
        assert comment_replicated_edit_apply(edit=remote) is False  # it loses: (1, "aa") < (1, "local")
    patch.join(timeout=15)

    assert answers == [200]
    comment.refresh_from_db()
    assert comment.body == "local 2"
    assert comment.vector == {"local": 2, "aa": 1}
    assert comment.edit_vector == {"local": 2, "aa": 1}
