"""Tap counts and count frames across a Redis restart that loses everything.

Each test runs its own nodes (and, where it flushes, a worker and beat) on a private Redis: data,
pub/sub and broker. Redis is killed and started again empty, as a Redis without persistence does
after a crash.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
import redis
from django.conf import settings

from reactions.redis_counters import counts_of, state_from_hashes, taps_key
from reactions.services.counter_flush import counter_state_from_db
from realtime.models import Stream
from tests.conftest import ApiUser
from tests.support.brokers import unique_queue
from tests.support.processes import AsgiNode, CeleryBeat, CeleryWorker, ManagedProcess, manage, wait_until
from tests.support.proxy import TcpProxy
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
        return _counts_in(self.redis, self.env["CHORUS_REDIS_PREFIX"], stream_id)

    def restart_redis_empty(self) -> None:
        self.redis.kill()
        self.redis.restart()


def _counts_in(store: RedisServer, prefix: str, stream_id: int) -> dict[str, int]:
    """The stream's counts as a private Redis holds them (every shard merged)."""
    client = redis.Redis.from_url(store.url)
    keys = [taps_key(stream_id, s).replace(settings.CHORUS_REDIS_PREFIX, prefix, 1) for s in range(8)]
    hashes = [cast(dict[bytes, bytes], client.hgetall(key)) for key in keys]  # the client does not decode
    return counts_of(state_from_hashes(hashes))


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
    restart_stack: RestartStack, api_user: ApiUser, stream: Stream
) -> None:
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


def _db_total(stream_id: int) -> int:
    return sum(counts_of(counter_state_from_db(stream_id=stream_id)).values())


@pytest.mark.parametrize("restart_stack", [1], indirect=True)
def test_taps_after_a_redis_restart_add_to_the_flushed_ones(
    restart_stack: RestartStack, api_user: ApiUser, stream: Stream
) -> None:
    """300 taps flushed, Redis restarted empty, 100 more by the same node process: 400 in PostgreSQL and
    in the count frames, and ``reconcile_counters --repair`` writes no loss back into Redis."""
    node = restart_stack.nodes[0]
    restart_stack.start_flushing()
    watcher = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
    try:
        # given: 300 taps, flushed to PostgreSQL by the worker
        _tap_n(node, stream.slug, api_user, 300)
        wait_until(lambda: _db_total(stream.id) == 300, timeout=20, what="the first flush")

        # when: Redis loses everything and the same node process counts 100 more taps
        restart_stack.restart_redis_empty()
        accepted = 0
        with httpx.Client(timeout=15) as client:
            while accepted < 100:
                accepted += _tap(client, node, stream.slug, api_user) == 202

        # then: the flush adds them to the 300, and every reader of counts says 400
        wait_until(lambda: _db_total(stream.id) == 400, timeout=20, what="400 flushed")
        watcher.wait_for(lambda _f: _last_counts(watcher) == {"heart": 400}, timeout=20, what="a frame with 400")
        late = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
        late.wait_for(lambda _f: _last_counts(late) == {"heart": 400}, timeout=10, what="400 on connect")
        late.close()
        assert restart_stack.redis_counts(stream.id) == {"heart": 400}

        repaired = manage("reconcile_counters", "--repair", env=restart_stack.env)
        assert repaired.returncode == 0, repaired.stderr
        assert restart_stack.redis_counts(stream.id) == {"heart": 400}
        assert _db_total(stream.id) == 400
    finally:
        watcher.close()


def test_taps_after_a_failover_to_a_lagging_replica_are_not_lost(api_user: ApiUser, stream: Stream) -> None:
    """A replica stopped following at 300 taps, the primary got to 500 (flushed), the node fails over to the
    replica and counts 100 more: 600 after a repair, not the 500 a counter going on from 300 would give."""
    primary = RedisServer("rx-failover-primary").start().wait_ready()
    replica = RedisServer("rx-failover-replica").start().wait_ready()
    proxy = TcpProxy("127.0.0.1", primary.port).restore()
    via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
    env = {
        "REDIS_URL": via_proxy,
        "CHORUS_REDIS_PREFIX": "rx-failover",
        "CHORUS_TASK_QUEUE": unique_queue(),
        "CHORUS_REACTION_TAPS_PER_SECOND": "100000",
        "CHORUS_HOT_STREAM_THRESHOLD": "1000000000",
    }
    node = AsgiNode("rx-failover-node", env=env).start()

    def repair(store: RedisServer) -> None:
        done = manage("reconcile_counters", "--repair", env={**env, "REDIS_URL": store.url})
        assert done.returncode == 0, done.stderr

    try:
        node.wait_ready()
        redis.Redis(port=replica.port).replicaof("127.0.0.1", primary.port)
        # given: 300 taps reach the replica, which then stops following; 200 more reach only the primary
        _tap_n(node, stream.slug, api_user, 300)
        replica_counts = lambda: _counts_in(replica, "rx-failover", stream.id)  # noqa: E731
        wait_until(lambda: replica_counts() == {"heart": 300}, timeout=20, what="the replica at 300")
        redis.Redis(port=replica.port).replicaof("NO", "ONE")
        _tap_n(node, stream.slug, api_user, 200)
        repair(primary)  # the flush: PostgreSQL has all 500
        assert _db_total(stream.id) == 500

        # when: the node fails over to the replica and counts 100 more taps
        proxy.cut()
        proxy.target = ("127.0.0.1", replica.port)
        proxy.restore()
        accepted = 0
        with httpx.Client(timeout=15) as client:
            while accepted < 100:
                accepted += _tap(client, node, stream.slug, api_user) == 202

        # then: the taps counted on the replica add to the 500 instead of counting on from 300
        repair(replica)
        assert _db_total(stream.id) == 600
        assert replica_counts() == {"heart": 600}
    finally:
        proxy.cut()
        node.stop()
        primary.stop()
        replica.stop()
