"""Live taps per second: the Redis PN-counter design against one database row per tap.

Starts two daphne nodes on free ports (benchmark settings: the real endpoints plus the naive
baseline's), sends the same number of taps to each design over HTTP (spread over both nodes) and
over WebSocket, checks every accepted tap was counted exactly (Redis and, after a flush,
PostgreSQL for the real design; rows for the naive one) and prints taps/s and ratios.

    python -m bench.reactions [--quick]

Uses ``CHORUS_BENCH_DATABASE_URL`` (default: the test database URL + ``_bench``) and the test
Redis URL with a ``-bench`` key prefix; the database is recreated on every run.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_test_db = os.environ.get("CHORUS_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chorus_test")
os.environ["DATABASE_URL"] = os.environ.get("CHORUS_BENCH_DATABASE_URL", _test_db + "_bench")
os.environ["REDIS_URL"] = os.environ.get("CHORUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ["CHORUS_REDIS_PREFIX"] = os.environ.get("CHORUS_REDIS_PREFIX", "chorus") + "-bench"
os.environ["CHORUS_REACTION_TAPS_PER_SECOND"] = "1000000000"
# The gateway buckets are spent on every tap and frame (as in production) but must not refuse here.
os.environ["CHORUS_RATE_LIMITS"] = '{"regular": {"reactions": [1e9, 1e9], "ws_messages": [1e9, 1e9]}}'
os.environ["CHORUS_TIER_HOT_ABOVE"] = "1000000000"
os.environ["CHORUS_LOG_LEVEL"] = "WARNING"
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"

import django  # noqa: E402

django.setup()

import websockets  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from websockets.asyncio.client import ClientConnection  # noqa: E402

from reactions.redis_counters import counter_state_read, counts_of, redis_client  # noqa: E402
from reactions.services.counter_flush import counter_state_from_db, reaction_taps_flush  # noqa: E402
from tests.factories import StreamFactory, UserFactory  # noqa: E402
from tests.support.processes import AsgiNode  # noqa: E402


def _prepare_database() -> None:
    import subprocess

    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    with psycopg.connect(
        host=config["HOST"] or "127.0.0.1", port=config["PORT"] or 5432, user=config["USER"] or "postgres",
        dbname="postgres", autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(config["NAME"])))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True, env=dict(os.environ))
    from bench.naive.views import TABLE

    with connection.cursor() as cursor:
        cursor.execute(TABLE)
    client = redis_client()
    keys = list(client.scan_iter(match=f"{settings.CHORUS_REDIS_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)


async def _http_worker(port: int, path: str, tokens: list[str], count: int, statuses: list[int]) -> None:
    """A minimal keep-alive HTTP/1.1 client, so the load generator costs little CPU."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"kind":"heart"}'
    for i in range(count):
        token = tokens[i % len(tokens)]
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        statuses.append(int(status_line.split()[1]))
    writer.close()


async def _http_run(
    nodes: list[AsgiNode], path: str, tokens: list[str], taps: int, concurrency: int
) -> tuple[float, int]:
    statuses: list[int] = []
    per = taps // concurrency
    started = time.perf_counter()
    await asyncio.gather(*(_http_worker(nodes[i % 2].port, path, tokens, per, statuses) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    accepted = statuses.count(202)
    assert accepted == len(statuses), f"unexpected statuses {set(statuses)}"
    return accepted / elapsed, accepted


async def _ws_run(
    nodes: list[AsgiNode], slug: str, frame_type: str, tokens: list[str], taps: int, done: Callable[[int], bool]
) -> float:
    sockets = [
        await websockets.connect(f"{nodes[i % 2].ws}/ws/streams/{slug}/?token={token}", close_timeout=2)
        for i, token in enumerate(tokens)
    ]
    for ws in sockets:
        await ws.recv()  # hello
    per = taps // len(sockets)
    frame = json.dumps({"type": frame_type, "kind": "fire"})

    async def send(ws: ClientConnection) -> None:
        for _ in range(per):
            await ws.send(frame)

    started = time.perf_counter()
    await asyncio.gather(*(send(ws) for ws in sockets))
    while not await asyncio.to_thread(done, per * len(sockets)):
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    return per * len(sockets) / elapsed


_T0 = time.perf_counter()


def _phase(name: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {name}", file=sys.stderr, flush=True)


def _naive_rows(stream_id: int, kind: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_naive_tap WHERE stream_id = %s AND kind = %s", [stream_id, kind])
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per measurement")
    args = parser.parse_args()
    http_taps, ws_taps, concurrency = (1200, 3000, 12) if args.quick else (3000, 6000, 24)

    _phase("preparing the database")
    _prepare_database()
    users = [UserFactory.create() for _ in range(concurrency)]
    tokens = [Token.objects.create(user=u).key for u in users]
    ours, naive = StreamFactory.create(slug="bench-ours"), StreamFactory.create(slug="bench-naive")
    nodes = [AsgiNode(f"bench-node-{n}", env={"DJANGO_SETTINGS_MODULE": "bench.settings"}).start() for n in "ab"]
    try:
        for node in nodes:
            node.wait_ready()
        _phase("warm-up")
        results: dict[str, float] = {}
        # warm-up (connections, pools, code paths), not measured
        asyncio.run(_http_run(nodes, f"/api/v1/streams/{ours.slug}/reactions", tokens, concurrency * 4, concurrency))
        asyncio.run(
            _http_run(nodes, f"/bench/naive/streams/{naive.slug}/reactions", tokens, concurrency * 4, concurrency)
        )
        warm_ours = sum(counts_of(counter_state_read(stream_id=ours.id)).values())
        warm_naive = _naive_rows(naive.id, "heart")

        _phase("HTTP, naive")
        results["http_naive"], naive_ok = asyncio.run(
            _http_run(nodes, f"/bench/naive/streams/{naive.slug}/reactions", tokens, http_taps, concurrency)
        )
        _phase("HTTP, PN-counter")
        results["http_ours"], ours_ok = asyncio.run(
            _http_run(nodes, f"/api/v1/streams/{ours.slug}/reactions", tokens, http_taps, concurrency)
        )
        assert sum(counts_of(counter_state_read(stream_id=ours.id)).values()) == warm_ours + ours_ok
        assert _naive_rows(naive.id, "heart") == warm_naive + naive_ok

        def ours_done(n: int) -> bool:
            return counts_of(counter_state_read(stream_id=ours.id)).get("fire", 0) >= n

        def naive_done(n: int) -> bool:
            return _naive_rows(naive.id, "fire") >= n

        _phase("WebSocket, naive")
        results["ws_naive"] = asyncio.run(_ws_run(nodes, naive.slug, "naive_reaction", tokens, ws_taps, naive_done))
        _phase("WebSocket, PN-counter")
        results["ws_ours"] = asyncio.run(_ws_run(nodes, ours.slug, "reaction", tokens, ws_taps, ours_done))

        # exactness: Redis holds every accepted tap, and a flush (twice) brings PostgreSQL to the same
        expected = warm_ours + ours_ok + (ws_taps // concurrency) * concurrency
        _phase("flush and exactness check")
        reaction_taps_flush()
        reaction_taps_flush()
        redis_total = sum(counts_of(counter_state_read(stream_id=ours.id)).values())
        db_total = sum(counts_of(counter_state_from_db(stream_id=ours.id)).values())
        assert redis_total == db_total == expected, (redis_total, db_total, expected)
    finally:
        _phase("stopping nodes")
        for node in nodes:
            node.stop()

    print(f"\n## Reactions: live taps ({'quick' if args.quick else 'full'} run, 2 daphne nodes)\n")
    print(f"{http_taps} HTTP taps and {ws_taps} WebSocket taps per design, {concurrency} concurrent clients.\n")
    print("| path | naive taps/s | Redis PN-counter taps/s | ratio |")
    print("|---|---:|---:|---:|")
    for path in ("http", "ws"):
        ratio = results[f"{path}_ours"] / results[f"{path}_naive"]
        print(f"| {path} | {results[f'{path}_naive']:.0f} | {results[f'{path}_ours']:.0f} | {ratio:.1f}x |")
    print(f"\nFinal counts exact: Redis = PostgreSQL = {expected} accepted taps.")


if __name__ == "__main__":
    main()
