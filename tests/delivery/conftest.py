"""A small stack (one node, one worker) per broker, for the fault tests of the delivery path."""

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from tests.support.brokers import RABBITMQ_URL, delete_queues, unique_queue
from tests.support.processes import AsgiNode, CeleryWorker, ManagedProcess

P = TypeVar("P", bound=ManagedProcess)


@dataclass
class FaultStack:
    broker: str
    env: dict[str, str]
    node: AsgiNode
    worker: CeleryWorker
    others: list[ManagedProcess] = field(default_factory=list)

    def restart_worker(self, **env: str) -> CeleryWorker:
        """Replace the worker (e.g. without the injected fault: "the bug is fixed")."""
        self.worker.stop()
        self.worker = CeleryWorker(self.worker.name, env={**self.env, **env}).start().wait_ready()
        return self.worker

    def start(self, process: P) -> P:
        self.others.append(process.start())
        return process

    def stop(self) -> None:
        for process in [self.node, self.worker, *self.others]:
            process.stop()


def broker_url(broker: str) -> str:
    return os.environ["REDIS_URL"] if broker == "redis" else RABBITMQ_URL


def start_fault_stack(broker: str, url: str, **env: str) -> FaultStack:
    queue = unique_queue()
    stack_env = {
        "CELERY_BROKER_URL": url,
        "CHORUS_TASK_QUEUE": queue,
        "CHORUS_TASK_MAX_RETRIES": "2",
        **env,
    }
    node = AsgiNode(f"fault-node-{broker}", env=stack_env).start()
    worker = CeleryWorker(f"fault-worker-{broker}", env=stack_env).start()
    node.wait_ready()
    worker.wait_ready()
    return FaultStack(broker=broker, env=stack_env, node=node, worker=worker)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fault_stack(request: pytest.FixtureRequest, broker: str, transactional_db: None) -> Iterator[FaultStack]:
    """One node and one worker on the given broker, with their own queue; ``fault`` marker adds env."""
    marker = request.node.get_closest_marker("fault_env")
    stack = start_fault_stack(broker, broker_url(broker), **(marker.kwargs if marker else {}))
    try:
        yield stack
    finally:
        stack.stop()
        delete_queues(broker_url(broker), stack.env["CHORUS_TASK_QUEUE"])
