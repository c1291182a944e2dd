"""Fan-out load test: Chorus' hub against the Channels tutorial pattern, in one run on one machine.

    python bench/fanout.py [--quick] [--server daphne|uvicorn|both] [--subscribers N] [--comments M]
                           [--rate R] [--warmup W] [--burst K] [--client-processes P] [--profile]
                           [--plot docs/bench-fanout.png] [--json FILE]

For each variant it starts two ASGI nodes (and, for Chorus, a Celery worker), opens N WebSocket
subscribers of one stream spread over both nodes, and measures:

- saturation: K events published back to back (Chorus: appended to the event log and published as
  the services do; baseline: ``group_send``), deliveries/s from the first publish to the last
  receipt, and lost / duplicated / reordered deliveries;
- latency: after W warm-up comments (reported apart: the cold start), M comments at R per second;
  for Chorus through ``POST /api/v1/streams/{slug}/comments``, the Celery task and the hub (POST to
  receipt); for the baseline ``group_send`` to receipt.

Figures are printed as ratios against the baseline measured in the same run. Set DATABASE_URL,
REDIS_URL and CHORUS_REDIS_PREFIX to a database and Redis of its own (``make bench`` does).
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.load_client import LoadClient, SocketReport  # noqa: E402

if TYPE_CHECKING:
    from tests.support.processes import AsgiNode

# The load client posts from one user at the measured rate: lift the gateway's per-user limits
# (and keep that user out of the stricter "hot" tier) so the run measures delivery, not throttling.
NODE_ENV = {
    "CHORUS_LOG_LEVEL": "WARNING",
    "CHORUS_NODE_MAX_CONNECTIONS": "100000",
    "CHORUS_RATE_LIMITS": '{"regular": {"comments": [1e9, 1e9], "ws_messages": [1e9, 1e9]}}',
    "CHORUS_TIER_HOT_ABOVE": "1000000000",
}


@dataclass
class Result:
    variant: str
    subscribers: int
    burst: int
    deliveries_per_s: float = 0.0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    rate: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_lost: int = 0
    warmup_latency_max_ms: float = 0.0  # the slowest receipt of the warm-up comments (cold start)
    refused_connections: int = 0
    server_us_per_delivery: float = 0.0  # CPU of both nodes during the burst / deliveries
    publish_p50_ms: float = 0.0  # POST accepted -> published by the Celery task (Chorus only)
    publish_p99_ms: float = 0.0
    profile: dict[str, float] = field(default_factory=dict)


class Load:
    """The subscribers (``bench.load_client``: several processes) and the progress of a phase."""

    def __init__(self, processes: int) -> None:
        self.client = LoadClient(processes)
        self.received = 0
        self.reports: list[SocketReport] = []

    async def open(self, urls: list[str]) -> int:
        """Open every socket; returns how many handshakes were refused (and retried)."""
        return await self.client.open(urls)

    async def wait(self, expected: int, *, timeout: float, desc: str) -> None:
        """Until ``expected`` frames arrived, or nothing more arrived for 5 s (the rest is lost)."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        last = -1
        with tqdm(total=expected, desc=desc, unit="msg", unit_scale=True, leave=False) as bar:
            while self.received < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                self.received = await self.client.received()
                bar.update(self.received - bar.n)
                if self.received != last:
                    last, quiet_since = self.received, time.monotonic()
                elif time.monotonic() - quiet_since > 5:
                    break
        self.reports = await self.client.collect()

    async def reset(self) -> None:
        await self.client.reset()
        self.received, self.reports = 0, []

    async def close(self) -> None:
        await self.client.close()


def _quality(load: Load, seqs: list[int], result: Result) -> None:
    expected = set(seqs)
    for sub in load.reports:
        got = [s for s in sub.seqs if s in expected]
        unique = set(got)
        result.lost += len(expected - unique)
        result.duplicated += len(got) - len(unique)
        result.reordered += sum(1 for a, b in itertools.pairwise(got) if b < a)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- publishers ---------------------------------------------------------------------------------


def chorus_publish_burst(stream_id: int, count: int) -> list[int]:
    """Append and publish ``count`` events exactly as the services do (log row, then PUBLISH)."""
    from django.db import transaction

    from realtime.services import stream_event_append

    seqs = []
    for start in range(0, count, 100):
        with transaction.atomic():
            for _ in range(min(100, count - start)):
                event = stream_event_append(
                    stream_id=stream_id, event_type="bench.event", event_id=uuid.uuid4(), payload={"n": start}
                )
                seqs.append(event.seq)
    return seqs


class NaivePublisher:
    """``group_send`` from a loop of its own, as a Django view or task would call it."""

    def __init__(self) -> None:
        from channels.layers import get_channel_layer

        from bench.naive_layer import naive_layer_install

        naive_layer_install()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.layer = get_channel_layer()

    def send(self, group: str, frames: list[str]) -> None:
        async def go() -> None:
            for frame in frames:
                await self.layer.group_send(group, {"type": "stream.event", "frame": frame})

        asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout=300)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _publish_latency(stream_id: int, *, after_seq: int) -> tuple[float, float]:
    """p50/p99 ms from a comment's acceptance to its publication (the REST view plus the Celery hop)."""
    from comments.models import Comment

    rows = Comment.objects.filter(stream_id=stream_id, published_at__isnull=False, seq__gt=after_seq).values_list(
        "created_at", "published_at"
    )
    values = [(published - created).total_seconds() for created, published in rows if published is not None]
    return round(1000 * _percentile(values, 0.5), 1), round(1000 * _percentile(values, 0.99), 1)


# --- one variant --------------------------------------------------------------------------------


def _start_nodes(variant: str, server: str, app: str) -> list["AsgiNode"]:
    from tests.support.processes import AsgiNode

    pool = f"bench-{uuid.uuid4().hex[:6]}"
    nodes = [
        AsgiNode(f"bench-{variant}-{i}", server=server, app=app, env={**NODE_ENV, "CHORUS_NODE_POOL": pool}).start()
        for i in range(2)
    ]
    for node in nodes:
        node.wait_ready(timeout=60)
    return nodes


def _py_spy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw", "--output", str(out),
         "--rate", "500", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# Where a sample's own time goes, judged by its innermost frame (self time; shares add up to 100).
PROFILE_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("socket write system call", ("untilConcludes", "websockets_sansio_impl.py:506", "writeSomeData", "sendmsg")),
    ("autobahn framing and unprinted debug-log formatting", ("autobahn/", "click/", "txaio/")),
    ("websockets framing (sans-I/O)", ("websockets/",)),
    ("daphne and Twisted dispatch", ("daphne/", "twisted/")),
    ("uvicorn dispatch", ("uvicorn/",)),
    ("Channels consumer wrappers", ("channels/", "asgiref/")),
    ("Chorus hub and sender", ("realtime/",)),
    ("asyncio scheduling", ("asyncio/", "uvloop")),
    ("Redis client", ("redis/",)),
]


def _summarise_profile(path: Path) -> dict[str, float]:
    """Share of samples by the innermost frame's owner (py-spy raw output: ``frames;... count``)."""
    totals = dict.fromkeys([name for name, _ in PROFILE_BUCKETS] + ["other"], 0)
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        samples += int(count)
        name = next((name for name, needles in PROFILE_BUCKETS if any(n in leaf for n in needles)), "other")
        totals[name] += int(count)
    return {name: round(100 * value / samples, 1) for name, value in totals.items() if value} if samples else {}


async def run_variant(args: argparse.Namespace, variant: str, server: str, ctx: dict[str, Any]) -> Result:
    from realtime.services import stream_create

    naive = variant.startswith("naive")
    slug = f"bench-{variant}-{uuid.uuid4().hex[:6]}"
    stream = await asyncio.to_thread(stream_create, slug=slug, title=slug)
    nodes = await asyncio.to_thread(
        _start_nodes, variant, server, "bench.naive_group_send:application" if naive else "project.asgi:application"
    )
    result = Result(variant=variant, subscribers=args.subscribers, burst=args.burst, rate=args.rate)
    load = Load(args.client_processes)
    publisher = NaivePublisher() if naive else None
    try:
        path = f"/ws/naive/{slug}/" if naive else f"/ws/streams/{slug}/"
        result.refused_connections = await load.open([f"{nodes[i % 2].ws}{path}" for i in range(args.subscribers)])
        await asyncio.sleep(1.0)  # let every subscription settle (group_add, hub subscribe)

        # Warm-up: the first comments after the nodes start pay one-time costs (the broker
        # connection, lazily built serializers and pools, the worker's first tasks). Measured
        # apart and reported as the cold start, not mixed into the steady-state percentiles.
        warm = await _timed_run(args, naive, slug, publisher, ctx, base=nodes[0].http, first_seq=1, count=args.warmup)
        await load.wait(args.subscribers * warm, timeout=60, desc=f"{variant} warm-up")
        cold = [lat for sub in load.reports for lat in sub.latencies]
        result.warmup_latency_max_ms = round(1000 * max(cold, default=0.0), 1)
        await load.reset()

        # Latency on a quiet system: comments at a steady rate.
        timed = await _timed_run(
            args, naive, slug, publisher, ctx, base=nodes[0].http, first_seq=warm + 1, count=args.comments
        )
        await load.wait(args.subscribers * timed, timeout=60, desc=f"{variant} latency")
        latencies = [lat for sub in load.reports for lat in sub.latencies]
        result.latency_p50_ms = round(1000 * _percentile(latencies, 0.50), 1)
        result.latency_p99_ms = round(1000 * _percentile(latencies, 0.99), 1)
        result.latency_lost = args.subscribers * timed - len(latencies)
        if not naive:
            result.publish_p50_ms, result.publish_p99_ms = await asyncio.to_thread(
                _publish_latency, stream.id, after_seq=warm
            )
        await load.reset()

        # Saturation: a burst of events back to back.
        profiler = None
        if args.profile:
            profiler = _py_spy(nodes[0].pid(), 8, ctx["profile_dir"] / f"{variant}.txt")
            await asyncio.sleep(0.5)
        cpu_before = sum(_cpu_seconds(node.pid()) for node in nodes)
        started = time.time()
        if publisher is not None:
            from realtime.protocol import event_frame

            numbers = list(range(warm + timed + 1, warm + timed + args.burst + 1))
            frames = [
                event_frame(seq=n, epoch=1, event_id=str(uuid.uuid4()), event_type="bench", payload={}) for n in numbers
            ]
            sender_task: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.to_thread(publisher.send, f"naive-{slug}", frames)
            )
        else:
            sender_task = asyncio.ensure_future(asyncio.to_thread(chorus_publish_burst, stream.id, args.burst))
        await load.wait(args.subscribers * args.burst, timeout=120, desc=f"{variant} burst")
        published = await sender_task
        seqs = numbers if naive else published
        last = max((sub.last_at for sub in load.reports), default=started)
        result.deliveries_per_s = load.received / max(last - started, 1e-6)
        cpu = sum(_cpu_seconds(node.pid()) for node in nodes) - cpu_before
        result.server_us_per_delivery = round(1e6 * cpu / max(load.received, 1), 1)
        _quality(load, seqs, result)
        if profiler is not None:
            profiler.wait(timeout=60)
            result.profile = _summarise_profile(ctx["profile_dir"] / f"{variant}.txt")
    finally:
        await load.close()
        if publisher is not None:
            publisher.stop()
        for node in nodes:
            node.stop()
    return result


async def _timed_run(
    args: argparse.Namespace,
    naive: bool,
    slug: str,
    publisher: "NaivePublisher | None",
    ctx: dict[str, Any],
    *,
    base: str,
    first_seq: int,
    count: int,
) -> int:
    """Post ``count`` comments (baseline: group_send frames) at the measured rate, each stamped with its send time."""
    from realtime.protocol import event_frame

    interval = 1.0 / args.rate
    next_at = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(count):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            stamp = f"@t={time.time():.6f}"
            if naive:
                assert publisher is not None
                frame = event_frame(
                    seq=first_seq + i, epoch=1, event_id=str(uuid.uuid4()), event_type="bench", payload={"b": stamp}
                )
                await asyncio.to_thread(publisher.send, f"naive-{slug}", [frame])
            else:
                response = await http.post(
                    f"{base}/api/v1/streams/{slug}/comments", json={"body": stamp}, headers=ctx["headers"]
                )
                response.raise_for_status()
    return count


# --- the run ------------------------------------------------------------------------------------


def _prepare() -> dict[str, Any]:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_database.py")], check=True)
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    return {"headers": {"Authorization": f"Token {token.key}"}}


def _plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.variant for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    bars = left.bar(names, [r.deliveries_per_s for r in results], color=["#999", "#2a7", "#27a"][: len(results)])
    left.bar_label(bars, fmt="%.0f")
    left.margins(y=0.12)
    left.set_title(f"deliveries/s at saturation\n({results[0].subscribers} subscribers, 2 nodes)")
    right.bar(names, [r.latency_p99_ms for r in results], color=["#999", "#2a7", "#27a"][: len(results)])
    right.set_yscale("log")
    right.axhline(100, color="#c33", linestyle="--", linewidth=1)
    right.annotate("target 100 ms", xy=(0.98, 100), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                   color="#c33", fontsize=8)  # fmt: skip
    right.set_title(f"p99 latency, ms (log scale), {results[0].rate:g} msg/s")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, about a minute")
    parser.add_argument("--server", choices=["daphne", "uvicorn", "both"], default="daphne")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=200, help="events published back to back (saturation)")
    parser.add_argument("--comments", type=int, default=200, help="comments for the latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="comments per second in the latency run")
    parser.add_argument("--warmup", type=int, default=20, help="comments before the latency run, reported apart")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--client-processes", type=int, default=2, help="processes holding the subscribers")
    parser.add_argument("--profile", action="store_true", help="py-spy the first node of each variant")
    parser.add_argument("--plot", type=Path, help="write a PNG of the results here")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.burst, args.comments = min(args.subscribers, 300), min(args.burst, 60), 40
        args.warmup = min(args.warmup, 10)

    logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx = _prepare()
    ctx["profile_dir"] = ROOT / "test-artifacts" / "profiles"
    ctx["profile_dir"].mkdir(parents=True, exist_ok=True)
    from tests.support.processes import CeleryWorker

    worker = CeleryWorker("bench-worker", env={"CHORUS_LOG_LEVEL": "WARNING"}).start()
    variants: list[tuple[str, str]] = [] if args.no_baseline else [("naive-group_send", "daphne")]
    servers = ["daphne", "uvicorn"] if args.server == "both" else [args.server]
    variants += [(f"chorus-{server}", server) for server in servers]
    results: list[Result] = []
    try:
        worker.wait_ready()
        for variant, server in variants:
            print(f"==> {variant}: {args.subscribers} subscribers over 2 {server} nodes", flush=True)
            result = uvloop.run(run_variant(args, variant, server, ctx))
            results.append(result)
            print(
                f"    {result.deliveries_per_s:,.0f} deliveries/s, lost {result.lost}, duplicated {result.duplicated},"
                f" reordered {result.reordered}; p50 {result.latency_p50_ms} ms, p99 {result.latency_p99_ms} ms"
                f" at {args.rate:g}/s (lost {result.latency_lost}; slowest warm-up receipt"
                f" {result.warmup_latency_max_ms} ms); handshakes refused {result.refused_connections};"
                f" server CPU {result.server_us_per_delivery} us/delivery"
                + (
                    f"; POST->published p50 {result.publish_p50_ms} ms, p99 {result.publish_p99_ms} ms"
                    if variant.startswith("chorus")
                    else ""
                ),
                flush=True,
            )
    finally:
        worker.stop()

    baseline = results[0] if not args.no_baseline else None
    print("\nvariant               deliveries/s   x baseline   us/delivery   p50 ms   p99 ms   lost  dup  reordered")
    for r in results:
        ratio = f"{r.deliveries_per_s / baseline.deliveries_per_s:10.1f}x" if baseline else "         -"
        print(
            f"{r.variant:<20} {r.deliveries_per_s:>13,.0f} {ratio}   {r.server_us_per_delivery:>11}"
            f"   {r.latency_p50_ms:>6}   {r.latency_p99_ms:>6}"
            f"   {r.lost + r.latency_lost:>4} {r.duplicated:>4} {r.reordered:>10}"
        )
    for r in results:
        if r.profile:
            print(f"\nprofile of {r.variant} (share of samples by innermost frame):")
            for name, share in sorted(r.profile.items(), key=lambda item: -item[1]):
                print(f"  {share:5.1f}%  {name}")
    if args.plot:
        _plot(results, args.plot)
        print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    chorus_lost = sum(
        r.lost + r.latency_lost + r.duplicated + r.reordered for r in results if r.variant.startswith("c")
    )
    return 1 if chorus_lost else 0


if __name__ == "__main__":
    sys.exit(main())
