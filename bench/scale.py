"""Scale benchmark: the production shape on one machine, under load, through a rolling restart.

    python bench/scale.py [--quick] [--topologies cluster,single] [--subscribers 5000] [--streams 200]
                          [--rate 200] [--before 15] [--after 10] [--json FILE]

For each topology, one after the other in the same run, it starts the stack as ``make cluster``
does and measures it from outside:

- three nodes (``scripts/node.sh``, which starts a node again after it drains and exits) behind a
  real HAProxy with the shipped configuration (``deploy/haproxy/chorus.cfg``), on free ports;
- the worker (``--concurrency=2``: two worker processes) and beat, as ``Procfile.cluster`` runs them;
- **cluster**: a Redis Cluster of 3 masters with a replica each (``scripts/redis_cluster.sh`` on free
  ports), ``CHORUS_REDIS_CLUSTER=1``, and a plain redis-server as the Celery broker (a cluster cannot
  be one); **single**: one redis-server for everything, broker included (the default);
- ``--subscribers`` WebSocket subscribers over ``--streams`` streams, all through the balancer, held
  by outside processes (``bench.load_client.ResumingLoadClient``): each resumes with ``?after=``
  after every close, at once (with the clients' small jitter) after a ``draining`` frame;
- ``--rate`` comments/s over REST through the balancer (``bench.http_load.rate_run``: open loop,
  keep-alive connections), from users with tokens who each post to one stream once every
  ``POSTS_EVERY`` seconds, so the default per-user quota admits them all; every POST carries an
  ``Idempotency-Key`` and its send time; nothing is retried (a 503 is counted);
- ``--before`` seconds into the posting, ``scripts/rolling_restart.sh`` drains and restarts every node
  in turn; the posting goes on until ``--after`` seconds after it finished.

Default settings everywhere except what the topology needs (addresses, ``CHORUS_REDIS_CLUSTER``, the
broker, ``CHORUS_PUBLIC_WS_URL``, a node pool of the run's own); ``--drain-seconds`` sets
``CHORUS_DRAIN_SECONDS`` (default: the node's own, 10 s).

Reported per topology: loss (events of its stream a subscriber never got; must be 0), duplicates,
reordering, POST-to-receipt latency (before, during and after the restart), the time from each
``draining`` frame to the resumed socket's ``hello``, Redis CPU per server (``INFO CPU``, before and
after the posting), the CPU of each node, the worker, beat and HAProxy (``/proc``, whole process
groups, restarted servers included), and what the POSTs got.
"""

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import uvloop  # noqa: E402

from bench.http_load import Tally, post_request, rate_run  # noqa: E402
from bench.load_client import ResumingLoadClient, ResumingReport  # noqa: E402
from bench.writepath import Databases, _clean_environment, percentile  # noqa: E402
from tests.support.processes import (  # noqa: E402
    ARTIFACTS,
    BIN,
    Balancer,
    ManagedProcess,
    SupervisedNode,
    wait_until,
)
from tests.support.redis_cluster import LocalRedisCluster  # noqa: E402
from tests.support.stores import RedisServer  # noqa: E402

POSTS_EVERY = 5.0  # seconds between two comments of one user: the default quota refills 0.5/s
MAX_RESTART_SECONDS = 400  # scripts/rolling_restart.sh gives up before (120 s per step)
WARMUP_SECONDS = 3.0  # the first comments meet cold pools and caches: left out of the latency figures
CLK = os.sysconf("SC_CLK_TCK")

SETUP_SCRIPT = """
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from rest_framework.authtoken.models import Token
from realtime.services import stream_create
for slug in json.loads(os.environ["BENCH_STREAMS"]):
    stream_create(slug=slug, title=slug)
User = get_user_model()
names = [f"scale{i:05d}" for i in range(int(os.environ["BENCH_USERS"]))]
hashed = make_password("scale-bench")
User.objects.bulk_create([User(username=n, password=hashed) for n in names], ignore_conflicts=True)
users = list(User.objects.filter(username__in=names))
Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users], ignore_conflicts=True)
tokens = dict(Token.objects.filter(user__in=users).values_list("user__username", "key"))
print("BENCH-USERS " + json.dumps(tokens))
"""


# --- the stack ------------------------------------------------------------------------------------


def procfile_cluster() -> dict[str, str]:
    """``Procfile.cluster``'s entries (what ``make cluster`` starts)."""
    entries = {}
    for line in (ROOT / "Procfile.cluster").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class RedisProbe:
    """One redis-server of the topology, read through INFO."""

    role: str  # "master", "replica" or "broker"
    port: int

    def sample(self) -> tuple[float, int]:
        """(CPU seconds, commands processed) so far."""
        client = redis.Redis(port=self.port, socket_timeout=5)
        cpu, stats = client.info("cpu"), client.info("stats")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), int(stats["total_commands_processed"])


def group_cpu(groups: list[int]) -> dict[int, float]:
    """CPU seconds of every process group: user + system of its live processes and of the children
    they reaped (so a node server that drained and exited still counts, through ``scripts/node.sh``)."""
    ticks = dict.fromkeys(groups, 0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = int(fields[2])
        if group in ticks:
            ticks[group] += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return {group: value / CLK for group, value in ticks.items()}


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class Stack:
    """One topology's processes: Redis, three supervised nodes, HAProxy, the worker and beat."""

    def __init__(self, topology: str, database_url: str, work_dir: Path, drain_seconds: float | None) -> None:
        self.topology = topology
        self.run_dir = work_dir / f"run-{topology}"
        self.database_url = database_url
        self.drain_seconds = drain_seconds
        self.cluster: LocalRedisCluster | None = None
        self.redis: RedisServer | None = None
        self.broker: RedisServer | None = None
        self.nodes: list[SupervisedNode] = []
        self.balancer: Balancer | None = None
        self.others: dict[str, ManagedProcess] = {}

    def start(self) -> "Stack":
        name = f"scale-{self.topology}"
        if self.topology == "cluster":
            self.cluster = LocalRedisCluster(f"{name}-redis", node_timeout_ms=2000)
            self.cluster.start()
            self.broker = RedisServer(f"{name}-broker").start().wait_ready()
            self.cluster.wait_ready()
            redis_env = {
                "CHORUS_REDIS_CLUSTER": "1",
                "REDIS_URL": self.cluster.url,
                "CELERY_BROKER_URL": self.broker.url,
            }
        else:
            self.redis = RedisServer(f"{name}-redis").start().wait_ready()
            redis_env = {"REDIS_URL": self.redis.url}
        self.nodes = [SupervisedNode(f"{name}-node{i}", run_dir=self.run_dir) for i in (1, 2, 3)]
        self.balancer = Balancer(f"{name}-haproxy", nodes=[f"127.0.0.1:{node.port}" for node in self.nodes])
        env = {
            **redis_env,
            "DATABASE_URL": self.database_url,
            "CHORUS_REDIS_PREFIX": "chorus-bench-scale",
            "CHORUS_NODE_POOL": f"scale-{uuid.uuid4().hex[:8]}",
            "CHORUS_PUBLIC_WS_URL": self.balancer.ws,
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(BIN.parent),
        }
        if self.drain_seconds is not None:
            env["CHORUS_DRAIN_SECONDS"] = f"{self.drain_seconds:g}"
        self.env = env
        for node in self.nodes:
            node.env.update(env)
            node.start()
        entries = procfile_cluster()
        for entry in ("worker", "beat"):
            command = entries[entry].replace(".celerybeat-schedule", str(self.run_dir / "beat-schedule"))
            process = ManagedProcess(f"{name}-{entry}", ["bash", "-c", f"exec {command}"], env)
            self.others[entry] = process.start()
        for node in self.nodes:
            node.wait_ready(timeout=120)
        self.balancer.start()
        self.balancer.wait_all_up(timeout=60)
        worker = self.others["worker"]
        wait_until(lambda: self._worker_ready(worker), timeout=120, interval=0.2, what="the worker")
        return self

    @staticmethod
    def _worker_ready(worker: ManagedProcess) -> bool:
        if not worker.alive():
            raise RuntimeError(f"{worker.name} exited; see {worker.log_path}")
        return " ready." in worker.run_log()

    def redis_probes(self) -> list[RedisProbe]:
        if self.cluster is not None:
            assert self.broker is not None
            masters = set(self.cluster.masters())
            probes = [RedisProbe("master" if port in masters else "replica", port) for port in self.cluster.ports]
            return [*sorted(probes, key=lambda p: p.role), RedisProbe("broker", self.broker.port)]
        assert self.redis is not None
        return [RedisProbe("master", self.redis.port)]

    def groups(self) -> dict[str, int]:
        """Process group of each measured process (each runs in a session of its own)."""
        named: dict[str, ManagedProcess] = {node.name.rsplit("-", 1)[1]: node for node in self.nodes}
        named.update(self.others)
        if self.balancer is not None:
            named["haproxy"] = self.balancer
        return {label: process.proc.pid for label, process in named.items() if process.proc is not None}

    def stop(self) -> None:
        for process in [self.balancer, *self.nodes, *self.others.values()]:
            if process is not None:
                process.stop()
        for server in (self.cluster, self.broker, self.redis):
            if server is not None:
                server.stop()


# --- a run of one topology ------------------------------------------------------------------------


@dataclass
class Snapshot:
    at: float
    redis: list[tuple[float, int]]
    groups: dict[str, float]
    clients: list[float]
    own: float  # this process: the poster, and the driving of the subscriber processes


def snapshot(stack: Stack, probes: list[RedisProbe], client_pids: list[int]) -> Snapshot:
    groups = stack.groups()
    by_group = group_cpu(list(groups.values()))
    return Snapshot(
        at=time.time(),
        redis=[probe.sample() for probe in probes],
        groups={label: by_group[pgid] for label, pgid in groups.items()},
        clients=[process_cpu(pid) for pid in client_pids],
        own=process_cpu(os.getpid()),
    )


def stream_heads(dbs: Databases, database: str, slugs: list[str]) -> dict[str, int]:
    with dbs.connect(database) as conn:
        rows = conn.execute("SELECT slug, last_seq FROM realtime_stream WHERE slug = ANY(%s)", [slugs]).fetchall()
    return dict(rows)


def unpublished(dbs: Databases, database: str, ids: list[str]) -> int:
    with dbs.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM comments_comment WHERE id::text = ANY(%s) AND status = 'published'", [ids]
        ).fetchone()
    assert row is not None  # an aggregate always returns its row
    return len(ids) - int(row[0])


def created_events(dbs: Databases, database: str, slugs: list[str]) -> tuple[int, int]:
    """(comment.created events, distinct comments among them) on the run's streams."""
    with dbs.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT e.payload->>'id') FROM realtime_streamevent e"
            " JOIN realtime_stream s ON s.id = e.stream_id WHERE s.slug = ANY(%s) AND e.type = 'comment.created'",
            [slugs],
        ).fetchone()
    assert row is not None  # an aggregate always returns its row
    return row[0], row[1]


async def run_topology(
    args: argparse.Namespace, topology: str, dbs: Databases, template: str, tokens: dict[str, str],
    slugs: list[str], work_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    database = f"{args.db_prefix}_{topology}"
    await asyncio.to_thread(dbs.create, database, template=template)
    stack = Stack(topology, dbs.url(database), work_dir, args.drain_seconds)
    subscribers: ResumingLoadClient | None = None
    result: dict[str, Any] = {"topology": topology}
    try:
        started = time.monotonic()
        await asyncio.to_thread(stack.start)
        assert stack.balancer is not None
        result["stack_start_s"] = round(time.monotonic() - started, 1)

        subscribers = ResumingLoadClient(args.client_processes)
        specs = [(f"{stack.balancer.ws}/ws/streams/{slugs[i % len(slugs)]}/", slugs[i % len(slugs)])
                 for i in range(args.subscribers)]  # fmt: skip
        started = time.monotonic()
        result["connect_retries"] = await subscribers.open(specs)
        result["connect_all_s"] = round(time.monotonic() - started, 1)
        result["per_node_sockets"] = await asyncio.to_thread(_sockets_per_node, stack)
        print(f"    {args.subscribers} subscribers live in {result['connect_all_s']} s, per node "
              f"{result['per_node_sockets']}", flush=True)  # fmt: skip

        names = sorted(tokens)
        host, port = "127.0.0.1", stack.balancer.port
        probes = stack.redis_probes()
        client_pids = subscribers.pids()
        answers: dict[int, tuple[int, str]] = {}
        stop = asyncio.Event()

        def make_request(i: int) -> bytes:
            # Comment i by user i mod users, who always posts to the same stream (users are a
            # multiple of the streams), stamped with its send time for POST-to-receipt.
            user = i % len(names)
            body = json.dumps({"body": f"s{i} @t={time.time():.6f}"}).encode()
            headers = {"Content-Type": "application/json", "Authorization": f"Token {tokens[names[user]]}",
                       "Idempotency-Key": uuid.uuid4().hex}  # fmt: skip
            return post_request(host=host, port=port, path=f"/api/v1/streams/{slugs[user % len(slugs)]}/comments",
                                body=body, headers=headers)  # fmt: skip

        def on_answer(i: int, response: Any) -> None:
            comment_id = ""
            if response.status in (201, 202):
                with contextlib.suppress(ValueError, AttributeError):
                    comment_id = str(json.loads(response.body).get("id", ""))
            answers[i] = (response.status, comment_id)

        before = await asyncio.to_thread(snapshot, stack, probes, client_pids)
        post_start = time.time()
        most = int(args.rate * (args.before + args.after + MAX_RESTART_SECONDS))
        posting = asyncio.ensure_future(
            rate_run(host, port, make_request, rate=args.rate, count=most, on_answer=on_answer, stop=stop)
        )
        await asyncio.sleep(args.before)
        restart_start = time.time()
        print(f"    rolling restart at +{restart_start - post_start:.1f} s", flush=True)
        restart = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "rolling_restart.sh"), cwd=ROOT,
            env={**os.environ, "CHORUS_NODE_PORTS": " ".join(str(n.port) for n in stack.nodes),
                 "CHORUS_RUN_DIR": str(stack.run_dir), "CHORUS_HAPROXY_STATS_URL": stack.balancer.stats_url,
                 "CHORUS_RESTART_TIMEOUT": "120"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await restart.communicate()
        restart_end = time.time()
        result["restart_s"] = round(restart_end - restart_start, 1)
        result["restart_ok"] = restart.returncode == 0 and "every node restarted" in output.decode()
        if not result["restart_ok"]:
            print(output.decode(), flush=True)
        print(f"    rolling restart took {result['restart_s']} s (ok: {result['restart_ok']})", flush=True)
        await asyncio.sleep(args.after)
        stop.set()
        tally = await posting
        post_end = time.time()
        after = await asyncio.to_thread(snapshot, stack, probes, client_pids)
        result["posting_s"] = round(post_end - post_start, 1)
        result.update(_post_summary(tally, answers))
        ids = [comment_id for status, comment_id in answers.values() if comment_id]
        deadline = time.monotonic() + args.catch_up
        while (left := await asyncio.to_thread(unpublished, dbs, database, ids)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        result["accepted_unpublished"] = left
        result["published_all_after_s"] = round(time.time() - post_end, 1) if not left else None
        heads = await asyncio.to_thread(stream_heads, dbs, database, slugs)
        events, distinct = await asyncio.to_thread(created_events, dbs, database, slugs)
        result["events_in_log"] = sum(heads.values())
        result["comment_events_duplicated"] = events - distinct
        while (behind := await subscribers.behind(heads)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        result["subscribers_behind_at_end"] = behind
        socket_reports = await subscribers.collect()
        result.update(_delivery(socket_reports, heads, post_start + WARMUP_SECONDS, restart_start, restart_end))
        result.update(_cpu(before, after, probes))
        return result
    finally:
        if subscribers is not None:
            await subscribers.close()
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(dbs.drop, database)


def _sockets_per_node(stack: Stack) -> list[int]:
    import httpx

    counts = []
    for node in stack.nodes:
        text = httpx.get(f"{node.http}/metrics", timeout=5).text
        line = next(line for line in text.splitlines() if line.startswith("chorus_ws_connections "))
        counts.append(int(float(line.split()[1])))
    return counts


def _post_summary(tally: Tally, answers: dict[int, tuple[int, str]]) -> dict[str, Any]:
    return {
        "posts": tally.sent,
        "post_statuses": {**{str(k): v for k, v in sorted(tally.statuses.items())}, **dict(tally.failures)},
        "posts_503_without_retry_after": len(tally.bad_refusals),
        "accepted_without_id": sum(1 for status, cid in answers.values() if status in (201, 202) and not cid),
        "post_answer_p50_ms": _ms(tally.percentile(0.5)),
        "post_answer_p99_ms": _ms(tally.percentile(0.99)),
    }


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(1000 * value, 1)


def _delivery(
    reports: list[ResumingReport], heads: dict[str, int], measured_from: float, restart_start: float, restart_end: float
) -> dict[str, Any]:
    lost = duplicates = reordered = deliveries = 0
    windows: dict[str, list[float]] = {"all": [], "before": [], "during": [], "after": []}
    handovers: list[float] = []
    drops: list[float] = []
    for report in reports:
        head = heads[report.stream]
        seen = set(report.seqs)
        lost += head - len(seen & set(range(1, head + 1)))
        duplicates += len(report.seqs) - len(seen)
        reordered += sum(1 for a, b in zip(report.seqs, report.seqs[1:], strict=False) if b < a)
        deliveries += len(report.seqs)
        for sent, received in zip(report.sent, report.received, strict=True):
            if sent < measured_from:
                continue
            latency = received - sent
            windows["all"].append(latency)
            window = "before" if sent < restart_start else "during" if sent < restart_end else "after"
            windows[window].append(latency)
        handovers += report.handovers
        drops += report.drops
    out: dict[str, Any] = {
        "subscribers": len(reports),
        "deliveries": deliveries,
        "lost": lost,
        "duplicates": duplicates,
        "reordered": reordered,
        "error_frames": sum(r.error_frames for r in reports),
        "handovers": len(handovers),
        "clients_handed_over": sum(1 for r in reports if r.handovers),
        "unannounced_drops": len(drops),
        "reconnect_retries": sum(r.refused for r in reports),
        "reconnect_failures": dict(sum((collections.Counter(r.failures) for r in reports), collections.Counter())),
        "refused_by_draining_node": sum(r.refused_draining for r in reports),
        "handover_p50_ms": _ms(percentile(handovers, 0.5)),
        "handover_p99_ms": _ms(percentile(handovers, 0.99)),
        "handover_max_ms": _ms(max(handovers)) if handovers else None,
    }
    for window, values in windows.items():
        out[f"receipt_{window}_p50_ms"] = _ms(percentile(values, 0.5))
        out[f"receipt_{window}_p99_ms"] = _ms(percentile(values, 0.99))
    out["receipt_all_max_ms"] = _ms(max(windows["all"])) if windows["all"] else None
    return out


def _cpu(before: Snapshot, after: Snapshot, probes: list[RedisProbe]) -> dict[str, Any]:
    wall = after.at - before.at
    redis_rows = []
    for probe, (cpu0, cmd0), (cpu1, cmd1) in zip(probes, before.redis, after.redis, strict=True):
        redis_rows.append({
            "role": probe.role, "port": probe.port, "cpu_before_s": round(cpu0, 2), "cpu_after_s": round(cpu1, 2),
            "cpu_share": round((cpu1 - cpu0) / wall, 3), "commands_per_s": round((cmd1 - cmd0) / wall),
        })  # fmt: skip
    groups = {label: round((after.groups[label] - before.groups[label]) / wall, 3) for label in before.groups}
    clients = sum(b - a for a, b in zip(before.clients, after.clients, strict=True)) / wall
    posters = (after.own - before.own) / wall
    return {"cpu_window_s": round(wall, 1), "redis": redis_rows, "process_cpu_share": groups,
            "subscriber_processes_cpu_share": round(clients, 3), "poster_cpu_share": round(posters, 3)}  # fmt: skip


# --- the run --------------------------------------------------------------------------------------


def prepare(dbs: Databases, template: str, slugs: list[str], users: int) -> dict[str, str]:
    """The template database: migrated, the run's streams and users with tokens."""
    dbs.create(template)
    server = RedisServer("scale-prepare-redis").start().wait_ready()
    try:
        env = {"DATABASE_URL": dbs.url(template), "REDIS_URL": server.url, "CHORUS_REDIS_PREFIX": "chorus-bench-scale"}
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput", "-v0")
        output = manage({**env, "BENCH_STREAMS": json.dumps(slugs), "BENCH_USERS": str(users)}, "shell", "-c",
                        SETUP_SCRIPT)  # fmt: skip
        return json.loads(output.split("BENCH-USERS ", 1)[1].splitlines()[0])
    finally:
        server.stop()


ROWS: list[tuple[str, str]] = [
    ("subscribers", "subscribers (all live before posting)"),
    ("per_node_sockets", "sockets per node at the start"),
    ("stack_start_s", "seconds to start the stack"),
    ("connect_all_s", "seconds to connect them all"),
    ("posts", "comments posted"),
    ("post_statuses", "POST answers"),
    ("posts_503_without_retry_after", "503 answers without Retry-After"),
    ("events_in_log", "events in the log (sum of heads)"),
    ("accepted_unpublished", "accepted but not published at the end"),
    ("deliveries", "deliveries received"),
    ("lost", "lost (must be 0)"),
    ("duplicates", "duplicates"),
    ("reordered", "reordered"),
    ("error_frames", "error frames"),
    ("receipt_before_p50_ms", "POST-to-receipt p50 before the restart, ms"),
    ("receipt_before_p99_ms", "POST-to-receipt p99 before the restart, ms"),
    ("receipt_during_p99_ms", "POST-to-receipt p99 during the restart, ms"),
    ("receipt_after_p99_ms", "POST-to-receipt p99 after the restart, ms"),
    ("receipt_all_p99_ms", "POST-to-receipt p99 overall, ms"),
    ("receipt_all_max_ms", "POST-to-receipt max, ms"),
    ("restart_s", "rolling restart, s"),
    ("handovers", "hand-overs (draining frame to resumed)"),
    ("clients_handed_over", "clients handed over at least once"),
    ("handover_p50_ms", "hand-over p50, ms"),
    ("handover_p99_ms", "hand-over p99, ms"),
    ("handover_max_ms", "hand-over max, ms"),
    ("unannounced_drops", "drops without a draining frame"),
    ("refused_by_draining_node", "reconnects refused by a draining node (retried)"),
    ("reconnect_retries", "connects that failed and were retried"),
    ("reconnect_failures", "... by cause (connect, HTTP status of the handshake)"),
    ("post_answer_p50_ms", "POST answer p50, ms"),
    ("post_answer_p99_ms", "POST answer p99, ms"),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n| | " + " | ".join(r["topology"] for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for key, label in ROWS:
        print(f"| {label} | " + " | ".join(_cell(r.get(key)) for r in results) + " |")
    labels = sorted({label for r in results for label in r.get("process_cpu_share", {})})
    for label in labels:
        cells = [_cell(r.get("process_cpu_share", {}).get(label)) for r in results]
        print(f"| CPU, {label} (cores) | " + " | ".join(cells) + " |")
    for key in ("subscriber_processes_cpu_share", "poster_cpu_share"):
        print(f"| CPU, {key.split('_cpu')[0].replace('_', ' ')} (cores) | "
              + " | ".join(_cell(r.get(key)) for r in results) + " |")  # fmt: skip
    for r in results:
        for row in r.get("redis", []):
            print(f"| Redis {r['topology']} :{row['port']} {row['role']}: CPU s before / after, cores, commands/s | "
                  + " | ".join(f"{row['cpu_before_s']} / {row['cpu_after_s']}, {row['cpu_share']}, "
                               f"{row['commands_per_s']:,}" if o is r else "" for o in results) + " |")  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 600 subscribers, 30 streams, 30/s")
    parser.add_argument("--topologies", default="cluster,single", help="cluster and/or single, in this order")
    parser.add_argument("--subscribers", type=int, help="WebSocket subscribers (5,000; --quick 600)")
    parser.add_argument("--streams", type=int, help="streams they spread over (200; --quick 30)")
    parser.add_argument("--rate", type=float, help="comments/s over all streams (200; --quick 30)")
    parser.add_argument("--before", type=float, help="seconds of posting before the restart (15; --quick 5)")
    parser.add_argument("--after", type=float, help="seconds of posting after the restart (10; --quick 3)")
    parser.add_argument("--drain-seconds", type=float, help="CHORUS_DRAIN_SECONDS (default: the node's, 10)")
    parser.add_argument("--catch-up", type=float, default=120.0,
                        help="seconds to wait after posting for publication and for every subscriber")  # fmt: skip
    parser.add_argument("--client-processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server")
    parser.add_argument("--db-prefix", default="chorus_bench_scale")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sizes = {"subscribers": 5000, "streams": 200, "rate": 200.0, "before": 15.0, "after": 10.0}
    if args.quick:
        sizes = {"subscribers": 600, "streams": 30, "rate": 30.0, "before": 5.0, "after": 3.0}
        args.catch_up = min(args.catch_up, 60.0)
        args.client_processes = min(args.client_processes, 2)
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.topologies = [t for t in args.topologies.split(",") if t]
    if not set(args.topologies) <= {"cluster", "single"}:
        parser.error("--topologies takes cluster and/or single")
    return args


async def main_async(args: argparse.Namespace) -> int:
    dbs = Databases(args.pg)
    work_dir = Path(tempfile.mkdtemp(prefix="chorus-bench-scale-"))
    template = f"{args.db_prefix}_template"
    slugs = [f"scale-{i:03d}" for i in range(args.streams)]
    # Each user posts every POSTS_EVERY seconds, always to the same stream; a multiple of the streams.
    users = math.ceil(max(args.rate * POSTS_EVERY, args.streams) / args.streams) * args.streams
    print(f"==> {args.subscribers} subscribers over {args.streams} streams, {args.rate:g} comments/s from "
          f"{users} users, topologies {', '.join(args.topologies)}", flush=True)  # fmt: skip
    print(f"    load average at the start {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared)",
          flush=True)  # fmt: skip
    results = []
    try:
        tokens = await asyncio.to_thread(prepare, dbs, template, slugs, users)
        for topology in args.topologies:
            print(f"==> {topology}", flush=True)
            try:
                result = await run_topology(args, topology, dbs, template, tokens, slugs, work_dir)
            except Exception as exc:  # a topology that cannot run is reported; the run goes on
                result = {"topology": topology, "error": f"{type(exc).__name__}: {exc}"}
                print(f"    FAILED: {result['error']}", flush=True)
            result["load_average_after"] = os.getloadavg()
            results.append(result)
        print_table(results)
        print(f"\nload average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared)")
        if args.json:
            conditions = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            args.json.write_text(json.dumps({"conditions": conditions, "results": results}, indent=2, default=str))
        failed = [r for r in results if "error" in r or r.get("lost") or not r.get("restart_ok")]
        return 1 if failed else 0
    finally:
        dbs.drop(template)
        shutil.rmtree(work_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dropped = _clean_environment()
    if dropped:
        print(f"==> not passed on to the stacks (default configuration): {', '.join(dropped)}")
    ARTIFACTS.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on SIGTERM too
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
