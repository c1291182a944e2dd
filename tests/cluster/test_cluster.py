"""Chorus on a real Redis Cluster: fan-out over sharded pub/sub, limits, tap counters and presence
across two nodes, and a master killed mid-stream with nothing lost, repeated or reordered."""

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from reactions.models import TapCounter
from reactions.redis_counters import counter_state_read, counts_of
from realtime.models import Stream
from realtime.pubsub_channels import stream_channel
from tests.cluster.conftest import TAP_CAPACITY, TAP_REFILL, ClusterStack
from tests.conftest import ApiUser
from tests.factories import StreamFactory, UserFactory
from tests.support.api import post_comment, wait_published
from tests.support.processes import ROOT, wait_until
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _slot(stream: Stream) -> int:
    return key_slot(stream_channel(stream.id).encode())


def _streams_on_every_master(cluster: LocalRedisCluster) -> list[Stream]:
    """One new stream whose partition lives on each master (stream ids are consecutive, partitions
    follow them, so new streams are made until every master has one)."""
    found: dict[int, Stream] = {}
    masters = cluster.masters()
    for _ in range(200):
        stream = StreamFactory.create(slug=f"cl-{uuid.uuid4().hex[:10]}")
        found.setdefault(cluster.master_of_slot(_slot(stream)), stream)
        if len(found) == len(masters):
            return list(found.values())
    raise AssertionError("could not place a stream on every master")


def _seqs(client: WsClient) -> list[int]:
    return [event["seq"] for event in client.events()]


def _shard_subscribers(cluster: LocalRedisCluster, port: int, channel: str) -> int:
    reply = cluster.client(port).execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


@pytest.fixture
def user(transactional_db: None) -> ApiUser:
    from rest_framework.authtoken.models import Token

    account = UserFactory.create()
    return ApiUser(user=account, token=Token.objects.create(user=account).key)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def test_every_subscriber_gets_every_event_once_in_order_across_nodes_and_masters(
    cluster_stack: ClusterStack, user: ApiUser, http: httpx.Client
) -> None:
    """Three streams on three masters, subscribers on both nodes: each gets 1..n once, in order, over
    sharded pub/sub with one subscription per node (SHARDNUMSUB on the owning master is 2)."""
    cluster, nodes = cluster_stack.cluster, cluster_stack.nodes
    streams = _streams_on_every_master(cluster)
    clients = {
        stream.id: [WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after=0") for node in nodes for _ in range(3)]
        for stream in streams
    }
    ids = []
    for i in range(20):
        for stream in streams:
            response = post_comment(http, nodes[i % 2].http, stream.slug, user.headers, f"c{i}")
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
    wait_published(ids)
    for stream in streams:
        for client in clients[stream.id]:
            client.wait_for_seq(20)
            assert _seqs(client) == list(range(1, 21))
        owner = cluster.master_of_slot(_slot(stream))
        assert _shard_subscribers(cluster, owner, stream_channel(stream.id)) == len(nodes)
    assert cluster.client(cluster.ports[0]).execute_command("PUBSUB", "CHANNELS") == []  # nothing unsharded
    for group in clients.values():
        for client in group:
            client.close()


def test_token_buckets_are_shared_by_the_nodes_within_one_percent(
    cluster_stack: ClusterStack, user: ApiUser, http: httpx.Client
) -> None:
    """Taps sent to both nodes spend one bucket in the cluster: what both admit together is the
    bucket's capacity plus its refill over the run, within 1%, and each node refuses the rest."""
    stream = StreamFactory.create(slug=f"lim-{uuid.uuid4().hex[:8]}")
    admitted = {node.name: 0 for node in cluster_stack.nodes}
    refused = dict.fromkeys(admitted, 0)
    started = time.monotonic()
    for i in range(2 * TAP_CAPACITY):
        node = cluster_stack.nodes[i % 2]
        response = http.post(
            f"{node.http}/api/v1/streams/{stream.slug}/reactions", json={"kind": "heart"}, headers=user.headers
        )
        assert response.status_code in (202, 429), response.text
        (admitted if response.status_code == 202 else refused)[node.name] += 1
    elapsed = time.monotonic() - started
    expected = TAP_CAPACITY + TAP_REFILL * elapsed
    total = sum(admitted.values())
    assert abs(total - expected) <= 0.01 * expected, (total, expected, admitted)
    assert all(refused.values()), refused  # both nodes saw the same, empty bucket


def test_tap_counts_are_exact_across_nodes_in_redis_on_sockets_and_in_postgresql(
    cluster_stack: ClusterStack, http: httpx.Client
) -> None:
    """300 taps by 3 users through both nodes: the cluster's counters, the last frame on a socket
    of each node and the flushed PostgreSQL rows all say 300."""
    stream = StreamFactory.create(slug=f"tap-{uuid.uuid4().hex[:8]}")
    nodes = cluster_stack.nodes
    sockets = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in nodes]
    from rest_framework.authtoken.models import Token

    tokens = [Token.objects.create(user=UserFactory.create()).key for _ in range(3)]
    for i in range(300):
        response = http.post(
            f"{nodes[i % 2].http}/api/v1/streams/{stream.slug}/reactions",
            json={"kind": "heart"},
            headers={"Authorization": f"Token {tokens[i % 3]}"},
        )
        assert response.status_code == 202, response.text

    def last_counts(client: WsClient) -> dict[str, int]:
        frames = [f for f in client.frames if f["type"] == "reactions"]
        return max(frames, key=lambda f: f["version"])["counts"] if frames else {}

    for client in sockets:
        client.wait_for(lambda _f, c=client: last_counts(c) == {"heart": 300}, timeout=20, what="300 hearts")
    cluster = RedisCluster.from_url(cluster_stack.cluster.url)
    assert counts_of(counter_state_read(stream_id=stream.id, client=cluster)) == {"heart": 300}

    def flushed() -> bool:
        return sum(TapCounter.objects.filter(stream_id=stream.id).values_list("count", flat=True)) == 300

    wait_until(flushed, timeout=20, interval=0.2, what="the flush of 300 taps")
    for client in sockets:
        client.close()


def test_presence_sums_the_viewers_of_both_nodes(cluster_stack: ClusterStack) -> None:
    """Two viewers on one node and one on the other: all three are told 3, through the cluster's registry."""
    stream = StreamFactory.create(slug=f"pr-{uuid.uuid4().hex[:8]}")
    node_a, node_b = cluster_stack.nodes
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in (node_a, node_a, node_b)]

    def viewers(client: WsClient) -> int | None:
        counts = [f["viewers"] for f in client.frames if f["type"] == "presence"]
        return counts[-1] if counts else None

    for client in clients:
        client.wait_for(lambda _f, c=client: viewers(c) == 3, timeout=15, what="3 viewers")
    clients.pop().close()
    clients[0].wait_for(lambda _f: viewers(clients[0]) == 2, timeout=15, what="2 viewers")
    for client in clients:
        client.close()


def _move_slot(cluster: LocalRedisCluster, slot: int, source: int, target: int) -> None:
    """Reshard one slot by hand, as ``redis-cli --cluster reshard`` does for each slot it moves."""
    ids = {port: cluster.client(port).execute_command("CLUSTER", "MYID").decode() for port in cluster.masters()}
    cluster.client(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    cluster.client(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    while keys := cluster.client(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        cluster.client(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    for port in [target, source, *(p for p in ids if p not in (source, target))]:
        cluster.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])


def test_a_partition_whose_slot_moves_is_followed_to_its_new_master(
    cluster_stack: ClusterStack, user: ApiUser, http: httpx.Client
) -> None:
    """Resharding moves a stream's slot to another master: the old master drops the subscriptions
    itself (sunsubscribe), both nodes resubscribe at the new one at once, and subscribers get
    every event once, in order, across the move."""
    cluster, nodes = cluster_stack.cluster, cluster_stack.nodes
    stream = StreamFactory.create(slug=f"mv-{uuid.uuid4().hex[:8]}")
    slot = _slot(stream)
    source = cluster.master_of_slot(slot)
    target = next(port for port in cluster.masters() if port != source)
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after=0") for node in nodes]

    def post(first: int, count: int) -> None:
        ids = []
        for i in range(first, first + count):
            response = post_comment(http, nodes[i % 2].http, stream.slug, user.headers, f"m{i}")
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        wait_published(ids)

    post(0, 10)
    for client in clients:
        client.wait_for_seq(10)
    _move_slot(cluster, slot, source, target)
    wait_until(
        lambda: _shard_subscribers(cluster, target, stream_channel(stream.id)) == len(nodes),
        timeout=10,
        what="both nodes subscribed on the slot's new master",
    )
    for node in nodes:
        assert f"{stream_channel(stream.id)} moved away from 127.0.0.1:{source}" in node.run_log()
    post(10, 10)
    for client in clients:
        client.wait_for_seq(20)
        assert _seqs(client) == list(range(1, 21))
        client.close()


class _Poster(threading.Thread):
    """Posts comments round-robin to the streams through both nodes, about ``rate`` a second; a post
    that fails (a node answering 503 during the failover) is sent again with the same key."""

    def __init__(self, stack: ClusterStack, streams: list[Stream], headers: dict[str, str], rate: float) -> None:
        super().__init__(daemon=True)
        self.stack, self.streams, self.headers, self.rate = stack, streams, headers, rate
        self.ids: list[str] = []
        self.retries = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=10) as http:
                i = 0
                while not self.stopping.is_set():
                    stream = self.streams[i % len(self.streams)]
                    self.ids.append(self._post(http, stream, i))
                    i += 1
                    time.sleep(1 / self.rate)
        except BaseException as exc:
            self.error = exc

    def _post(self, http: httpx.Client, stream: Stream, i: int) -> str:
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 30
        while True:
            node = self.stack.nodes[(i + self.retries) % 2]
            try:
                response = post_comment(http, node.http, stream.slug, self.headers, f"f{i}", key=key)
                if response.status_code == 202:
                    return response.json()["id"]
            except httpx.HTTPError:
                pass
            self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"comment {i} not accepted within 30 s")
            time.sleep(0.1)  # a client's backoff before it retries with the same key (bounded by the deadline)


def test_a_log_reset_is_announced_on_the_partition_and_reaches_sockets_on_both_nodes(
    cluster_stack: ClusterStack, user: ApiUser, http: httpx.Client
) -> None:
    """``manage.py stream_reset`` run against the cluster: the new epoch is announced by a sharded
    publish on the stream's partition (nothing unsharded), and every socket gets its reset, then
    the new epoch's events."""
    cluster, nodes = cluster_stack.cluster, cluster_stack.nodes
    stream = StreamFactory.create(slug=f"cl-{uuid.uuid4().hex[:10]}")
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after=0") for node in nodes]
    wait_published([post_comment(http, nodes[i].http, stream.slug, user.headers, f"c{i}").json()["id"] for i in (0, 1)])
    for client in clients:
        client.wait_for_seq(2)
    listener = cluster.client(cluster.master_of_slot(_slot(stream))).pubsub()
    listener.ssubscribe(stream_channel(stream.id))

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **cluster_stack.env}
    subprocess.run([sys.executable, "manage.py", "stream_reset", stream.slug], cwd=ROOT, env=env, check=True)
    stream.refresh_from_db()
    notice = f"{stream.id}|!{stream.epoch}".encode()
    wait_until(
        lambda: (message := listener.get_sharded_message(timeout=0.5)) is not None and message["data"] == notice,
        timeout=10,
        what="the epoch announced on the partition",
    )
    listener.close()
    assert cluster.client(cluster.ports[0]).execute_command("PUBSUB", "CHANNELS") == []

    wait_published([post_comment(http, nodes[0].http, stream.slug, user.headers, "after").json()["id"]])
    for client in clients:
        client.wait_for_seq(3)
        frames = [(f["type"], f.get("epoch"), f.get("seq")) for f in client.frames if f["type"] in ("reset", "event")]
        assert frames == [("event", 1, 1), ("event", 1, 2), ("reset", stream.epoch, 2), ("event", stream.epoch, 3)]
        client.close()


def test_a_master_killed_mid_stream_loses_repeats_and_reorders_nothing(
    cluster_stack: ClusterStack, user: ApiUser
) -> None:
    """SIGKILL of the master carrying a stream's partition while comments flow at 20/s: its replica
    takes over, both nodes resubscribe there, and every subscriber of every stream still ends with
    every event exactly once, in order (what pub/sub lost is repaired from the event log)."""
    cluster = cluster_stack.cluster
    streams = _streams_on_every_master(cluster)
    # The master behind REDIS_URL itself: every client must find the cluster through the others.
    victim_stream = next(s for s in streams if cluster.master_of_slot(_slot(s)) == cluster.ports[0])
    victim = cluster.master_of_slot(_slot(victim_stream))
    clients = {
        stream.id: [WsClient(f"{node.ws}/ws/streams/{stream.slug}/?after=0") for node in cluster_stack.nodes]
        for stream in streams
    }
    poster = _Poster(cluster_stack, streams, user.headers, rate=20)
    poster.start()
    wait_until(lambda: len(poster.ids) >= 40, timeout=30, what="40 comments before the kill")

    cluster.kill_node(victim)
    new_master = cluster.wait_failover(victim, _slot(victim_stream))
    wait_until(lambda: len(poster.ids) >= 160, timeout=60, what="comments after the failover")
    poster.stopping.set()
    poster.join(timeout=40)
    assert poster.error is None, poster.error

    wait_published(poster.ids, timeout=90)
    heads = dict(Stream.objects.filter(id__in=[s.id for s in streams]).values_list("id", "last_seq"))
    assert sum(heads.values()) == len(poster.ids)
    for stream in streams:
        for client in clients[stream.id]:
            client.wait_for_seq(heads[stream.id], timeout=30)
            assert _seqs(client) == list(range(1, heads[stream.id] + 1)), f"stream {stream.id} on {client.url}"
            assert not [f for f in client.frames if f.get("type") == "error"]
    # The hubs moved the partition to the promoted replica (not only repaired from the log).
    channel = stream_channel(victim_stream.id)
    wait_until(
        lambda: _shard_subscribers(cluster, new_master, channel) == len(cluster_stack.nodes),
        timeout=20,
        what="both nodes subscribed on the new master",
    )
    for group in clients.values():
        for client in group:
            client.close()
