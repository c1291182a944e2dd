"""Every command README.md and docs/OPERATIONS.md show, run as written in a fresh clone.

The clone is ``git clone`` of this checkout's HEAD (commit first: uncommitted changes are not in
it), with the shared ``.venv`` linked in rather than installed again. Two nodes (uvicorn and
daphne, by ``scripts/serve.sh`` as ``make run`` starts them) and a Celery worker run from the clone.
The commands are read from the documents themselves, so a document and this test cannot drift:

- README's "Try it" block, as one shell script, with three substitutions only: the admin password
  for its ``'…'`` placeholder, and this test's node addresses for ``127.0.0.1:8000`` / ``:8001``.
  The listener it starts runs in the background until the comment reaches it.
- Every ``manage.py`` command of OPERATIONS.md (its ``sh`` blocks and inline code) and README, in
  the environment the runbook names (the project's virtualenv first on ``PATH``), except those in
  ``SKIPPED``, each with the reason. Example arguments (``SLUG``, a dead letter's ``42``) become
  real objects made here.
"""

import os
import re
import secrets
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from delivery.models import DeadLetter
from tests.factories import StreamFactory
from tests.support.processes import ROOT, CeleryWorker, ServedNode, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# Documented commands this test does not run (matched by prefix), and why.
SKIPPED = {
    "make run": "the whole stack in the foreground on fixed ports with the developer's database; this "
    "test starts its pieces from the clone instead (scripts/serve.sh on both servers, a worker)",
    "make test": "this suite itself",
    ".venv/bin/python manage.py changepassword": "interactive: asks for the new password on a terminal",
    "python manage.py changepassword": "interactive: asks for the new password on a terminal",
    "python manage.py reconcile_counters [--repair]": "a synopsis: both forms are documented and run on their own",
    "python manage.py hot_streams --pin SLUG hot|cold|auto": "a synopsis: each form is documented and run on its own",
    "python manage.py dlq replay 42 43": "queues the letters' tasks again; run with real letters by "
    "tests/delivery/test_faults.py and test_self_healing.py",
    "python manage.py sagas show 6f1c": "needs a saga; `sagas show` of a real one is run by tests/sagas",
    "python manage.py sagas resume 6f1c": "needs a stalled saga; run by tests/sagas/test_comment_and_react.py",
    "python manage.py sagas compensate 6f1c": "needs a running saga; run by tests/sagas/test_operator_compensate.py",
}


def _blocks(text: str, heading: str | None = None) -> list[str]:
    """The ``sh`` code blocks of ``text`` (of the section under ``heading`` only, if given)."""
    if heading is not None:
        text = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def documented_manage_commands() -> list[str]:
    """Every ``manage.py`` command of OPERATIONS.md and README, as written, without comments."""
    commands: list[str] = []
    for path in (ROOT / "docs" / "OPERATIONS.md", ROOT / "README.md"):
        text = path.read_text()
        for block in _blocks(text):
            commands += [line.split("  #")[0].strip() for line in block.splitlines() if "manage.py" in line]
        # Inline mentions name the command; the runbook runs it with the project's python.
        commands += [
            command if command.startswith((".venv/", "python ")) else f"python {command}"
            for command in re.findall(r"`((?:\.venv/bin/)?(?:python )?manage\.py [^`]*)`", text)
        ]
    return list(dict.fromkeys(commands))


def _skipped(command: str) -> str | None:
    return next((why for prefix, why in SKIPPED.items() if command.startswith(prefix)), None)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, stack: Any) -> Iterator[dict[str, Any]]:
    """A fresh clone of HEAD with two nodes and a worker started from it."""
    path = tmp_path_factory.mktemp("fresh") / "chorus"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True, timeout=120)
    (path / ".venv").symlink_to((ROOT / ".venv").resolve())
    run = uuid.uuid4().hex[:6]
    env = {
        "CHORUS_NODE_POOL": f"docs-{run}",
        "PATH": f"{path / '.venv' / 'bin'}:{os.environ['PATH']}",
        # Its own limits and keys, as a new user's stack has: the per-address sign-in limit must
        # not be one that earlier tests of this run spent from the same address.
        "CHORUS_REDIS_PREFIX": f"chorus-docs-{run}",
    }
    processes: list[ServedNode | CeleryWorker] = [
        ServedNode("docs-uvicorn", server="uvicorn", env=env),
        ServedNode("docs-daphne", server="daphne", env=env),
        CeleryWorker("docs-worker", concurrency=1, env=env),
    ]
    try:
        for process in processes:
            process.cwd = path
            process.start()
        for process in processes:
            process.wait_ready()
        yield {"path": path, "env": {**os.environ, **env}, "nodes": processes[:2]}
    finally:
        for process in processes:
            process.stop()


def _squeezed(text: str) -> str:
    return text.replace(" ", "")


def _bash(script: str, clone: dict[str, Any], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=clone["path"],
        env=clone["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_readme_try_it_works_as_written_on_a_fresh_clone(clone: dict[str, Any], live: Any) -> None:
    """The README's "Try it" block: a token, a listener on one node, a post on the other, a read."""
    # given: what make run sets up
    password = secrets.token_urlsafe(12)
    get_user_model().objects.create_superuser("admin", "admin@example.com", password)
    StreamFactory.create(slug="demo")
    (block,) = _blocks((ROOT / "README.md").read_text(), "## Try it")
    node_a, node_b = clone["nodes"]
    script = block.replace("ADMIN_PASSWORD='…'", f"ADMIN_PASSWORD='{password}'")
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{node_a.port}").replace(
        "127.0.0.1:8001", f"127.0.0.1:{node_b.port}"
    )
    paragraphs = [p for p in script.split("\n\n") if p.strip()]
    # The listener keeps running (its stdin held open); the read of the stream waits until it has the event.
    listener_out = clone["path"] / "listener.out"
    *steps, read = [
        "\n".join(
            f"tail -f /dev/null | {line} > {listener_out} 2>&1 &" if "-m websockets" in line else line
            for line in paragraph.splitlines()
        )
        for paragraph in paragraphs
    ]
    assert "-m websockets" in "\n".join(steps) and "comments?after=0" in read

    # when
    runner = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + "\n\n".join(steps) + "\nwait"],
        cwd=clone["path"],
        env=clone["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: (
                (listener_out.exists() and '"body":"hello"' in _squeezed(listener_out.read_text()))
                or runner.poll() is not None
            ),
            timeout=60,
            what="the README's listener to receive the comment",
        )
        assert runner.poll() is None, runner.communicate()[0]  # it waits for the listener
        listened = listener_out.read_text()
        answer = _bash("set -euo pipefail\n" + read, clone)
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        output = runner.communicate(timeout=30)[0]

    # then
    assert re.search(r'"status"\s*:\s*"pending"', output), output
    assert '"event":"comment.created"' in _squeezed(listened), listened
    assert answer.returncode == 0 and '"body":"hello"' in _squeezed(answer.stdout), answer


@pytest.mark.parametrize("command", [c for c in documented_manage_commands() if _skipped(c) is None])
def test_documented_manage_command_works_on_a_fresh_clone(clone: dict[str, Any], live: Any, command: str) -> None:
    """Each operator command of the runbook (but ``SKIPPED``), run as written in the clone, succeeds."""
    # given: what the examples name
    StreamFactory.create(slug="demo")
    letter = DeadLetter.objects.create(message_id=uuid.uuid4().hex, task_name="some.task", exception_type="Boom")
    script = re.sub(r"\bSLUG\b", "demo", command)
    script = re.sub(r"\bdlq show 42\b", f"dlq show {letter.id}", script)

    # when
    result = _bash(script, clone, timeout=120)

    # then
    assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


def test_every_skipped_command_is_still_documented() -> None:
    """The allow-list names only commands the documents still show."""
    documented = [*documented_manage_commands(), "make run", "make test"]
    for prefix in SKIPPED:
        assert any(command.startswith(prefix) for command in documented), f"{prefix!r} is no longer documented"
