"""A rolling restart behind a real HAProxy loses nothing: every node drained and restarted in turn under load."""

import asyncio
import os
import random
import shutil
import subprocess
import uuid

import httpx
import pytest

from comments.models import Comment, CommentStatus
from realtime.client import ChorusClient, Subscription
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory
from tests.support.processes import ARTIFACTS, ROOT, Balancer, SupervisedNode, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 500
STREAMS = 20
RATE = 20  # comments per second, over REST through the balancer
DRAIN_SECONDS = 3


class HttpLog(httpx.AsyncHTTPTransport):
    """Every HTTP answer the clients got through the balancer, and every request that got none."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.answers: list[tuple[str, int, str | None]] = []
        self.failures: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.HTTPError as exc:
            self.failures.append(f"{request.method} {request.url.path}: {exc!r}")
            raise
        self.answers.append(
            (f"{request.method} {request.url.path}", response.status_code, response.headers.get("Retry-After"))
        )
        return response


async def _post_all(
    http: httpx.AsyncClient, base: str, slugs: list[str], headers: dict, stop: asyncio.Event
) -> list[str]:
    """Post RATE comments a second, round-robin over the streams, until ``stop``; a 503 is retried with its key."""
    ids: list[str] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    n = 0

    async def post(slug: str, key: str, body: str) -> None:
        while True:
            try:
                response = await http.post(
                    f"{base}/api/v1/streams/{slug}/comments",
                    json={"body": body},
                    headers={**headers, "Idempotency-Key": key},
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.5)  # recorded as a failure by the transport: the test fails on it
                continue
            if response.status_code == 503 and response.headers.get("Retry-After"):
                await asyncio.sleep(float(response.headers["Retry-After"]))
                continue
            assert response.status_code in (201, 202), (response.status_code, response.text)
            ids.append(response.json()["id"])
            return

    pending = set()
    while not stop.is_set():
        n += 1
        pending.add(asyncio.create_task(post(slugs[n % len(slugs)], str(uuid.uuid4()), f"c{n}")))
        await asyncio.sleep(max(0.0, started + n / RATE - loop.time()))
    await asyncio.gather(*pending)
    return ids


async def _scenario(balancer, nodes, slugs, api_user, run_dir, gaps):
    transport = HttpLog(limits=httpx.Limits(max_connections=100))
    async with (
        httpx.AsyncClient(timeout=30, transport=transport) as http,
        ChorusClient(balancer.http, http=http, backoff=(0.05, 2.0)) as chorus,
    ):
        clients: list[Subscription] = []
        for i in range(CLIENTS):
            client = chorus.subscribe(slugs[i % len(slugs)], after=0)
            client.seqs = []  # type: ignore[attr-defined]
            client.on("event", lambda frame, seqs=client.seqs: seqs.append(frame["seq"]))  # type: ignore[attr-defined]
            client.on("gap", gaps.append)
            clients.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.wait_live() for c in clients)), timeout=120)
        # the clients are spread over every node
        spread = await asyncio.to_thread(lambda: [_connections(node) for node in nodes])
        assert all(spread) and sum(spread) == CLIENTS, spread

        stop_posting = asyncio.Event()
        poster = asyncio.create_task(_post_all(http, balancer.http, slugs, api_user.headers, stop_posting))
        await asyncio.sleep(2)
        restart = await asyncio.create_subprocess_exec(
            "scripts/rolling_restart.sh",
            cwd=ROOT,
            env={
                **os.environ,
                "CHORUS_NODE_PORTS": " ".join(str(node.port) for node in nodes),
                "CHORUS_RUN_DIR": str(run_dir),
                "CHORUS_HAPROXY_STATS_URL": balancer.stats_url,
                "CHORUS_RESTART_TIMEOUT": "90",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(restart.communicate(), timeout=300)
        assert restart.returncode == 0, output.decode()
        await asyncio.sleep(2)
        stop_posting.set()
        ids = await poster

        await asyncio.to_thread(_wait_published, ids)
        heads = await asyncio.to_thread(_heads, slugs)

        async def all_caught_up() -> None:
            while any(client.position["seq"] < heads[client.stream] for client in clients):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(all_caught_up(), timeout=90)
        return clients, ids, heads, transport, output.decode()


def _connections(node: SupervisedNode) -> int:
    text = httpx.get(f"{node.http}/metrics", timeout=5).text
    return int(float(next(line.split()[1] for line in text.splitlines() if line.startswith("chorus_ws_connections "))))


def _heads(slugs: list[str]) -> dict[str, int]:
    return dict(Stream.objects.filter(slug__in=slugs).values_list("slug", "last_seq"))


def _wait_published(ids: list[str]) -> None:
    def published() -> bool:
        return Comment.objects.filter(id__in=ids, status=CommentStatus.PUBLISHED).count() == len(ids)

    wait_until(published, timeout=120, interval=0.2, what=f"{len(ids)} comments to be published")


def test_rolling_restart_behind_haproxy_loses_nothing(live: Stack, api_user: ApiUser) -> None:
    """500 clients on 20 streams through HAProxy, 20 comments/s posted through it, and
    scripts/rolling_restart.sh drains and restarts each of the 3 nodes in turn: every client ends with
    every event of its stream exactly once, in order; no client sees an error frame; every HTTP
    request gets an answer, and the only non-2xx answers are 503s with Retry-After."""
    slugs = [StreamFactory.create(slug=f"roll-{uuid.uuid4().hex[:8]}").slug for _ in range(STREAMS)]
    random.shuffle(slugs)
    run_dir = ARTIFACTS / f"run-{uuid.uuid4().hex[:8]}"
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    ports = []
    nodes: list[SupervisedNode] = []
    balancer = None
    try:
        for i in range(3):
            node = SupervisedNode(f"roll-node{i + 1}", run_dir=run_dir)
            ports.append(node.port)
            nodes.append(node)
        balancer = Balancer("roll-haproxy", nodes=[f"127.0.0.1:{port}" for port in ports])
        env = {
            "CHORUS_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "CHORUS_NODE_POOL": pool,
            "CHORUS_PUBLIC_WS_URL": balancer.ws,
        }
        for node in nodes:
            node.env.update(env)
            node.start()
        for node in nodes:
            node.wait_ready()
        balancer.start()
        balancer.wait_all_up()
        first_pids = [node.server_pid() for node in nodes]
        gaps: list = []
        clients, ids, heads, transport, output = asyncio.run(_scenario(balancer, nodes, slugs, api_user, run_dir, gaps))
        restarted_pids = [node.server_pid() for node in nodes]
    finally:
        for process in [balancer, *nodes]:
            if process is not None:
                process.stop()

    # every node was drained and replaced, one at a time
    assert all(old != new for old, new in zip(first_pids, restarted_pids, strict=True)), output
    assert output.count("draining") == 3 and "every node restarted" in output
    assert len(ids) >= RATE * 10 and sum(heads.values()) == len(ids)
    # every client: every event of its stream, once, in order; handed over at least once; no error frame
    assert gaps == []
    for client in clients:
        seqs = client.seqs
        assert seqs == list(range(1, heads[client.stream] + 1)), (client.stream, seqs[-5:], client.urls)
        assert client.stats["duplicates"] == 0
        assert client.stats["error_frames"] == 0
        assert client.stats["drained"] >= 1  # the node it was on drained at some point: handed over, not cut
    # every HTTP request got an answer; the only failures are explicit 503s with Retry-After
    assert transport.failures == []
    bad = [answer for answer in transport.answers if answer[1] >= 400 and not (answer[1] == 503 and answer[2])]
    assert bad == []


def test_the_shipped_haproxy_configuration_is_valid() -> None:
    """deploy/haproxy/chorus.cfg passes HAProxy's own check with make cluster's addresses."""
    haproxy = shutil.which("haproxy")
    assert haproxy, "HAProxy is not installed: apt-get install haproxy (make cluster does it)"
    env = {
        **os.environ,
        "CHORUS_PUBLIC_BIND": "127.0.0.1:8000",
        "CHORUS_HAPROXY_STATS_BIND": "127.0.0.1:8404",
        **{f"CHORUS_NODE{i}": f"127.0.0.1:800{i}" for i in (1, 2, 3)},
    }
    check = subprocess.run(
        [haproxy, "-c", "-f", "deploy/haproxy/chorus.cfg"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
