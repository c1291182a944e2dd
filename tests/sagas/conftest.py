"""A node and a worker that fail on purpose where a saga's input asks them to."""

from collections.abc import Iterator

import pytest

from tests.delivery.conftest import FaultStack, start_fault_stack

SAGA = "saga.comment_and_react"
FAULTS = ",".join(
    [
        f"{SAGA}.comment:fail-comment",
        f"{SAGA}.react:fail-react",
        f"{SAGA}.react.after:fail-after-react",
        f"{SAGA}.react:hang-react:hang",
        f"{SAGA}.comment.compensation:fail-undo-comment",
        f"{SAGA}.react.compensation:fail-undo-react",
    ]
)


@pytest.fixture(scope="module")
def saga_stack(django_db_setup: None) -> Iterator[FaultStack]:
    import os

    stack = start_fault_stack(
        "redis",
        os.environ["REDIS_URL"],
        CHORUS_FAULT_INJECT=FAULTS,
        CHORUS_TASK_MAX_RETRIES="1",
        CHORUS_SAGA_CLAIM_LEASE_SECONDS="3",
    )
    try:
        yield stack
    finally:
        stack.stop()
