"""The embedded SQLite fallback of ``make run`` runs the whole write path, like PostgreSQL does."""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.databases import run_module, scratch_database_url
from tests.support.processes import AsgiNode, CeleryBeat, CeleryWorker, manage, wait_until
from tests.support.ws import WsClient


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_write_path_services_run_on_the_database(backend, tmp_path: Path) -> None:
    """Accept, batch and single publish, comment reactions, edits, deletes and tap merges, then the log."""
    url = scratch_database_url(backend, suffix="write_path", directory=tmp_path)
    # Its own queue and key prefix: the nudges it sends must not reach the suite's worker.
    own = {key: f"{os.environ[key]}-{backend}-write-path" for key in ("CHORUS_TASK_QUEUE", "CHORUS_REDIS_PREFIX")}

    out = run_module("tests.comments.write_path_process", database_url=url, env=own)

    assert out["vendor"] == backend
    assert out["accept"] == [True, True, True, True]
    assert (out["batch"], out["single"]) == (3, 4)
    assert out["reactions"] == [[True, 1], [False, 1], [True, 2], [True, 1], [False, 1]]
    assert out["mine"] == ["heart"]
    assert out["stale"] == 2
    assert out["edit"] == [2, True]
    assert out["delete"] == [True, False]
    assert out["taps"] == [[1, 0, 1], {"r1": 7}]
    assert out["log"] == [
        [1, "comment.created", "c0 remote", None],
        [2, "comment.created", "", None],
        [3, "comment.created", "c2", None],
        [4, "comment.created", "reply", None],
        [5, "reaction.added", None, 1],
        [6, "reaction.added", None, 2],
        [7, "reaction.removed", None, 1],
        [8, "comment.edited", "c0 remote", None],
        [9, "comment.edited", "c0 remote", None],
        [10, "comment.deleted", "", None],
    ]
    assert out["head"] == 10
    assert out["page"] == ["c0 remote", "c2", "reply"]


def _sqlite_stack_setup(env: dict[str, str]) -> list[str]:
    """Migrate the file, create the stream and two users; their API tokens."""
    assert manage("migrate", "--noinput", env=env).returncode == 0
    assert manage("stream_create", "fallback", "--title", "Fallback", env=env).returncode == 0
    made = manage(
        "shell",
        "-c",
        "import json; from django.contrib.auth import get_user_model;"
        " from rest_framework.authtoken.models import Token;"
        " print(json.dumps([Token.objects.create(user=get_user_model().objects.create_user(n)).key"
        " for n in ('ann', 'bob')]))",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout.strip().splitlines()[-1])


def test_a_stack_on_sqlite_takes_concurrent_writes_from_two_nodes_and_a_worker(tmp_path: Path) -> None:
    """`make run`'s fallback: two uvicorn nodes, a worker and beat on one SQLite file, under concurrent writes.

    Every write answers without a 5xx, every comment is published, the log is gapless and a
    replay from 0 carries no deleted text.
    """
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'chorus.sqlite3'}",
        **{key: f"{os.environ[key]}-sqlite-stack" for key in ("CHORUS_TASK_QUEUE", "CHORUS_REDIS_PREFIX")},
    }
    tokens = _sqlite_stack_setup(env)
    headers = [{"Authorization": f"Token {token}"} for token in tokens]
    nodes = [
        AsgiNode("sqlite-node-a", server="uvicorn", env=env).start(),
        AsgiNode("sqlite-node-b", server="uvicorn", env=env).start(),
    ]
    worker = CeleryWorker("sqlite-worker", env=env).start()
    processes = [*nodes, worker, CeleryBeat("sqlite-beat", env=env).start()]
    try:
        for node in nodes:
            node.wait_ready()
        worker.wait_ready()

        def post(i: int) -> httpx.Response:
            with httpx.Client(timeout=30) as client:
                url = f"{nodes[i % 2].http}/api/v1/streams/fallback/comments"
                return client.post(url, json={"body": f"text {i}"}, headers=headers[i % 2])

        with ThreadPoolExecutor(max_workers=8) as pool:
            posted = list(pool.map(post, range(40)))
        assert [r.status_code for r in posted] == [202] * 40, [r.text for r in posted if r.status_code != 202][:3]
        ids = [r.json()["id"] for r in posted]

        def status(comment_id: str) -> str:
            return httpx.get(f"{nodes[0].http}/api/v1/comments/{comment_id}", timeout=10).json()["status"]

        wait_until(lambda: all(status(i) == "published" for i in ids), timeout=60, what="40 comments published")

        def touch(i: int) -> list[int]:
            """Both users react to comment i at once with an edit or a delete of it by its author."""
            with httpx.Client(timeout=30) as client:
                base = f"{nodes[i % 2].http}/api/v1/comments/{ids[i]}"
                answers = [client.put(f"{base}/reactions/heart", headers=h).status_code for h in headers]
                if i % 3 == 0:
                    answers.append(client.delete(base, headers=headers[i % 2]).status_code)
                else:
                    edit = client.patch(
                        base, json={"body": f"edited {i}"}, headers={**headers[i % 2], "If-Match": '"1"'}
                    )
                    answers.append(edit.status_code)
                answers.append(client.delete(f"{base}/reactions/heart", headers=headers[1 - i % 2]).status_code)
                return answers

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(touch, range(40)))
        for i, got in enumerate(answers):
            assert got == [201, 201, 204 if i % 3 == 0 else 200, 204], (i, got)

        head = 40 + 40 * 4
        replay = WsClient(f"{nodes[1].ws}/ws/streams/fallback/?after=0")
        events = replay.wait_for_seq(head, timeout=30)
        replay.close()
        assert [e["seq"] for e in events] == list(range(1, head + 1))
        bodies = {e["data"]["id"]: e["data"]["body"] for e in events if e["event"].startswith("comment.")}
        assert bodies == {ids[i]: "" if i % 3 == 0 else f"edited {i}" for i in range(40)}
        assert httpx.get(f"{nodes[0].http}/metrics", timeout=10).status_code == 200
    finally:
        for process in processes:
            process.stop()
