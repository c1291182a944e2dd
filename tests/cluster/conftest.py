"""A real Chorus stack on a real Redis Cluster: 3 masters with a replica each, two ASGI nodes (uvicorn
and daphne) with ``CHORUS_REDIS_CLUSTER=1``, a Celery worker and beat.

The broker is the suite's plain Redis (never the cluster), on a task queue of its own so the shared
stack's worker never takes these tasks. Limits: ``reactions`` is a small bucket (the limit test);
everything else admits all.

The stack lives as long as its module, never the session: its beat re-drives every comment pending in
the shared database, so left running it would publish the comments that later tests leave pending on
purpose (tests/delivery/test_self_healing.py).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings

from tests.support.brokers import unique_queue
from tests.support.processes import AsgiNode, CeleryBeat, CeleryWorker
from tests.support.redis_cluster import LocalRedisCluster

UNLIMITED = [1e6, 1e6]
TAP_CAPACITY, TAP_REFILL = 400, 0.5
LIMITS = {
    "regular": {
        "comments": UNLIMITED,
        "reactions": [TAP_CAPACITY, TAP_REFILL],
        "writes": UNLIMITED,
        "reads": UNLIMITED,
        "ws_messages": UNLIMITED,
    }
}


@dataclass
class ClusterStack:
    cluster: LocalRedisCluster
    nodes: list[AsgiNode]
    worker: CeleryWorker
    beat: CeleryBeat
    env: dict[str, str]


@pytest.fixture(scope="module")
def cluster_stack(django_db_setup: None) -> Iterator[ClusterStack]:
    cluster = LocalRedisCluster().start()
    processes: list = [cluster]
    try:
        cluster.wait_ready()
        env = {
            "CHORUS_REDIS_CLUSTER": "1",
            "REDIS_URL": cluster.url,
            "CELERY_BROKER_URL": settings.CHORUS_REDIS_URL,  # the suite's plain Redis
            "CHORUS_TASK_QUEUE": unique_queue(),
            "CHORUS_RATE_LIMITS": json.dumps(LIMITS),
            "CHORUS_REACTION_TAPS_PER_SECOND": "1000000",
            "CHORUS_REACTION_FLUSH_SECONDS": "0.5",
            "CHORUS_NODE_HEARTBEAT_SECONDS": "0.5",
            "CHORUS_NODE_POOL": "cluster",
            "CHORUS_HUB_TAIL_CHECK_SECONDS": "1",
            "CHORUS_PUBSUB_TOPOLOGY_SECONDS": "2",
        }
        nodes = [
            AsgiNode("cluster-node-a", server="uvicorn", env=env).start(),
            AsgiNode("cluster-node-b", server="daphne", env=env).start(),
        ]
        worker = CeleryWorker("cluster-worker", env=env).start()
        beat = CeleryBeat("cluster-beat", env=env).start()
        processes += [*nodes, worker, beat]
        for node in nodes:
            node.wait_ready(timeout=60)
        worker.wait_ready()
        yield ClusterStack(cluster=cluster, nodes=nodes, worker=worker, beat=beat, env=env)
    finally:
        for process in reversed(processes):
            process.stop()
