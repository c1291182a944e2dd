"""Tap counts and count frames across a Redis restart that loses everything.

Each test runs its own nodes (and, where it flushes, a worker and beat) on a private Redis: data,
pub/sub and broker. Redis is killed and started again empty, as a Redis without persistence does
after a crash.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from reactions.counters import counts_of, state_from_hashes
from tests.conftest import ApiUser
from tests.support.brokers import unique_queue
from tests.support.processes import AsgiNode, CeleryBeat, CeleryWorker, ManagedProcess, wait_until
from tests.support.stores import RedisServer
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class RestartStack:
    redis: RedisServer
    env: dict[str, str]
    nodes: list[AsgiNode]
    others: list[ManagedProcess] = field(default_factory=list)

    def start_flushing(self) -> None:
        """A real worker and beat, which flushes the counters every second."""
        self.others.append(CeleryWorker("rx-restart-worker", env=self.env).start().wait_ready())
        self.others.append(CeleryBeat("rx-restart-beat", env=self.env).start())

    def redis_counts(self, stream_id: int) -> dict[str, int]:
        """The stream's counts as the private Redis holds them (every shard merged)."""
        client = redis.Redis.from_url(self.redis.url)
        prefix = self.env["CHORUS_REDIS_PREFIX"]
        return counts_of(state_from_hashes([client.hgetall(f"{prefix}:rx:taps:{stream_id}:{s}") for s in range(8)]))

    def restart_redis_empty(self) -> None:
        self.redis.kill()
        self.redis.restart()


@pytest.fixture
def restart_stack(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[RestartStack]:
    nodes_wanted = getattr(request, "param", 2)
    store = RedisServer("rx-restart-redis").start().wait_ready()
    env = {
        "REDIS_URL": store.url,
        "CHORUS_REDIS_PREFIX": "rx-restart",
        "CHORUS_TASK_QUEUE": unique_queue(),
        "CHORUS_REACTION_TAPS_PER_SECOND": "100000",
        "CHORUS_HOT_STREAM_THRESHOLD": "1000000000",  # every stream stays cold: one frame per tap
        "CHORUS_REACTION_FLUSH_SECONDS": "1",
    }
    nodes = [AsgiNode(f"rx-restart-node-{i}", env=env).start() for i in range(nodes_wanted)]
    stack = RestartStack(redis=store, env=env, nodes=nodes)
    try:
        for node in nodes:
            node.wait_ready()
        yield stack
    finally:
        for process in [*nodes, *stack.others]:
            process.stop()
        store.stop()


def _tap(client: httpx.Client, node: AsgiNode, slug: str, user: ApiUser) -> int:
    url = f"{node.http}/api/v1/streams/{slug}/reactions"
    return client.post(url, json={"kind": "heart"}, headers=user.headers).status_code


def _tap_n(node: AsgiNode, slug: str, user: ApiUser, count: int) -> None:
    with httpx.Client(timeout=15) as client:
        statuses = [_tap(client, node, slug, user) for _ in range(count)]
    assert statuses == [202] * count


def _count_frames(socket: WsClient) -> list[dict[str, Any]]:
    return [frame for frame in socket.frames if frame.get("type") == "reactions"]


def _last_counts(socket: WsClient) -> dict[str, int] | None:
    frames = _count_frames(socket)
    return frames[-1]["counts"] if frames else None


def test_count_frames_keep_flowing_in_version_order_after_a_redis_restart(
    restart_stack: RestartStack, api_user: ApiUser, stream
) -> None:  # type: ignore[no-untyped-def]
    """Redis restarted empty: watchers on both nodes get the new counts, with versions still rising."""
    watchers = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in restart_stack.nodes]
    try:
        # given: 200 taps on node 0, seen by the watchers on both nodes
        _tap_n(restart_stack.nodes[0], stream.slug, api_user, 200)
        for watcher in watchers:
            watcher.wait_for(lambda _f, w=watcher: _last_counts(w) == {"heart": 200}, timeout=15, what="200 taps")

        # when: Redis loses everything, and taps go on from both nodes, one at a time
        restart_stack.restart_redis_empty()
        taps = 0

        def watchers_see_the_counts() -> bool:
            nonlocal taps
            with httpx.Client(timeout=15) as client:
                if _tap(client, restart_stack.nodes[taps % 2], stream.slug, api_user) == 202:
                    taps += 1
            counts = restart_stack.redis_counts(stream.id)
            return bool(counts) and all(_last_counts(watcher) == counts for watcher in watchers)

        # far fewer taps than before the restart: a version counter that restarted at 1 stays behind
        wait_until(watchers_see_the_counts, timeout=20, interval=0.5, what="count frames after the restart")

        # then: every watcher got its frames in rising version order, across the restart
        for watcher in watchers:
            versions = [frame["version"] for frame in _count_frames(watcher)]
            assert versions == sorted(set(versions)), versions
    finally:
        for watcher in watchers:
            watcher.close()
