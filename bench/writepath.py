"""Write-path benchmark: comments over REST to WebSocket subscribers, as an outsider measures it.

    python bench/writepath.py [--quick] [--server default|uvicorn|daphne|both]
                              [--phases sustained,burst,latency,restart] [--rates 1000] [--bursts 1000]
                              [--variants baseline,candidate] [--json FILE] [--plot FILE.png]

Two variants, measured phase by phase in one run on one machine:

- **baseline**: the code of ``BASELINE_COMMIT`` (one Celery task, transaction, stream-row lock and
  publish per comment), exported with ``git archive`` into a temporary directory;
- **candidate**: this working tree.

Each variant gets its own PostgreSQL database (migrated from its own tree: a template copied
afresh for every phase) and, for every phase, a private redis-server on a free port, so a phase
starts from an empty broker and the restart phase can restart it. Every phase starts the stack
as ``make run`` does: each entry of the variant's ``Procfile`` (two ``scripts/serve.sh`` nodes, the
worker, beat) on free ports, with the default configuration and logging. The only settings
changed: ``CHORUS_RATE_LIMITS`` lifts the per-user comment quota (in the "regular" and "hot"
tiers), plus the database, Redis and key prefix; ``--server`` sets ``CHORUS_ASGI_SERVER``.
Variables of the caller's environment that configure Chorus are not passed on.

Clients are outside processes: posters (``bench.http_load``: open-loop HTTP/1.1 keep-alive, half of
the users signed in through the login page with a session cookie and CSRF token as the demo page
posts, half with ``Authorization: Token``, every POST with an ``Idempotency-Key``) and subscribers
(``bench.load_client``) spread over both nodes. POST-to-receipt is the receipt time minus the
time the POST was sent (carried in the comment's body).

Phases (each after a warm-up of 20 comments at 20/s that is not counted):

- sustained: ``--rates`` comments/s for ``--duration`` s, 20 subscribers;
- burst: ``--bursts`` comments posted at once by 100 users on warm connections, 20 subscribers;
- latency: 1,000 subscribers, 200 comments at 20/s from session users; the cold start (slowest
  warm-up receipt) is reported apart;
- restart: workers stalled (SIGSTOP), 300 comments posted, Redis killed and started empty, workers
  resumed (SIGCONT); how many are published exactly once, and when.

Results print as a table (with candidate/baseline ratios), and optionally as JSON and a plot.
"""

import argparse
import asyncio
import collections
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import uvloop  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.http_load import Outcome, PosterPool, User  # noqa: E402
from bench.load_client import LoadClient, SocketReport  # noqa: E402
from tests.support.processes import BIN, ManagedProcess, free_port, wait_until  # noqa: E402
from tests.support.stores import RedisServer  # noqa: E402

# Today's per-comment-task design (issue 11's starting point): each accepted comment is its own
# Celery task with its own transaction, stream-row lock and publish. The baseline of every ratio.
BASELINE_COMMIT = "0cf021f"

# The one setting the issue allows to change: lift the per-user comment quota, in both tiers a
# user can be in (a user posting 10 comments/s turns "hot" by default).
RATE_LIMITS = json.dumps({"regular": {"comments": [1e9, 1e9]}, "hot": {"comments": [1e9, 1e9]}})
PASSWORD = "writepath-bench"
STREAM = "bench"
CONFIG_PREFIXES = ("CHORUS_", "DJANGO_", "CELERY_")
CONFIG_NAMES = ("DATABASE_URL", "DATABASE_REPLICA_URL", "REDIS_URL")

USERS_SCRIPT = """
import json, os
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from rest_framework.authtoken.models import Token
User = get_user_model()
names = [f"wp{i:03d}" for i in range(int(os.environ["BENCH_USERS"]))]
hashed = make_password(os.environ["BENCH_PASSWORD"])
User.objects.bulk_create([User(username=n, password=hashed) for n in names], ignore_conflicts=True)
tokens = {u.username: Token.objects.get_or_create(user=u)[0].key for u in User.objects.filter(username__in=names)}
print("BENCH-USERS " + json.dumps(tokens))
"""


# --- databases ----------------------------------------------------------------------------------


class Databases:
    """Databases of the run on one PostgreSQL server (``--pg``), created and dropped here."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url.rstrip("/")

    def url(self, name: str) -> str:
        return f"{self.server_url}/{name}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5)

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create(self, name: str, *, template: str | None = None) -> None:
        self.drop(name)
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._admin() as conn:
            conn.execute(query)

    def connect(self, name: str) -> psycopg.Connection:
        return psycopg.connect(self.url(name), autocommit=True, connect_timeout=5)


# --- variants and their stacks ------------------------------------------------------------------


@dataclass
class Variant:
    name: str  # "baseline" or "candidate"
    tree: Path
    server: str  # CHORUS_ASGI_SERVER, or "default" to leave scripts/serve.sh's choice
    db_prefix: str
    tokens: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)  # session users' cookies

    @property
    def label(self) -> str:
        return f"{self.name}-{self.server}"

    @property
    def database(self) -> str:
        """Each phase's database, a fresh copy of ``template``."""
        return f"{self.db_prefix}_{self.name}_{self.server}"

    @property
    def template(self) -> str:
        return f"{self.database}_template"


def _stack_env(variant: Variant, *, database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(BIN.parent),
        "PYTHONPATH": str(variant.tree),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CHORUS_REDIS_PREFIX": "chorus-bench-writepath",
        "CHORUS_RATE_LIMITS": RATE_LIMITS,
    }
    if variant.server != "default":
        env["CHORUS_ASGI_SERVER"] = variant.server
    return env


def procfile(tree: Path) -> dict[str, str]:
    """The variant's ``Procfile`` entries: what ``make run`` starts (through honcho)."""
    entries = {}
    for line in (tree / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


class Stack:
    """One variant's processes, started from its Procfile on free ports (``make run`` uses 8000/8001)."""

    def __init__(self, variant: Variant, *, database_url: str, redis_url: str, work_dir: Path) -> None:
        self.variant = variant
        self.env = _stack_env(variant, database_url=database_url, redis_url=redis_url)
        self.work_dir = work_dir
        self.nodes: list[tuple[str, int]] = []
        self.processes: dict[str, ManagedProcess] = {}
        self.workers: list[ManagedProcess] = []

    def start(self, *, nodes_only: bool = False) -> "Stack":
        for name, command in procfile(self.variant.tree).items():
            serve = re.search(r"scripts/serve\.sh\s+(\d+)", command)
            if serve:
                port = free_port()
                command = command[: serve.start(1)] + str(port) + command[serve.end(1) :]
                self.nodes.append(("127.0.0.1", port))
            elif nodes_only:
                continue
            # A schedule file of this run's own, not the one a developer's `make run` uses.
            command = command.replace(".celerybeat-schedule", str(self.work_dir / f"{name}-schedule"))
            process = ManagedProcess(
                f"writepath-{self.variant.label}-{name}", ["bash", "-c", f"exec {command}"], self.env,
                cwd=self.variant.tree,
            )  # fmt: skip
            self.processes[name] = process.start()
            if re.search(r"\bcelery\b.*\bworker\b", command):
                self.workers.append(process)
        if len(self.nodes) < 2:
            raise RuntimeError(f"{self.variant.tree}/Procfile starts {len(self.nodes)} scripts/serve.sh nodes, not 2")
        for host, port in self.nodes:
            wait_until(partial(self._healthy, host, port), timeout=90, interval=0.2, what=f"node :{port}")
        for worker in self.workers:
            wait_until(partial(self._worker_ready, worker), timeout=90, interval=0.2, what=f"{worker.name} ready")
        return self

    def _healthy(self, host: str, port: int) -> bool:
        dead = [p.name for p in self.processes.values() if not p.alive()]
        if dead:
            raise RuntimeError(f"{dead} exited; see test-artifacts/{dead[0]}.log")
        try:
            return httpx.get(f"http://{host}:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _worker_ready(worker: ManagedProcess) -> bool:
        if not worker.alive():
            raise RuntimeError(f"{worker.name} exited; see {worker.log_path}")
        with worker.log_path.open("rb") as log:
            log.seek(worker.log_offset)
            return b" ready." in log.read()

    def signal_workers(self, sig: int) -> None:
        """SIGSTOP / SIGCONT every worker process (the pool's children too)."""
        for worker in self.workers:
            assert worker.proc is not None
            os.killpg(worker.proc.pid, sig)

    def profile(self, directory: Path, tag: str, *, seconds: float) -> list[subprocess.Popen[bytes]]:
        """py-spy, sampling every process of the stack (a worker's pool children too) for ``seconds``:
        collapsed stacks in ``directory/<variant>-<process>-<tag>.txt`` (flame-graph input)."""
        directory.mkdir(parents=True, exist_ok=True)
        profilers = []
        for name, process in self.processes.items():
            assert process.proc is not None
            output = directory / f"{self.variant.label}-{name}-{tag}.txt"
            command = ["py-spy", "record", "--pid", str(process.proc.pid), "--subprocesses", "--format", "raw",
                       "--rate", "200", "--duration", str(max(1, round(seconds))), "--output", str(output)]  # fmt: skip
            profilers.append(subprocess.Popen([str(Path(sys.executable).parent / command[0]), *command[1:]],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        return profilers

    def process_groups(self) -> set[int]:
        return {p.proc.pid for p in self.processes.values() if p.proc is not None}

    def stop(self) -> None:
        # What a phase measured is already collected: end every process at once.
        for process in self.processes.values():
            if process.alive():
                assert process.proc is not None
                os.killpg(process.proc.pid, signal.SIGCONT)
            process.kill()


def _manage(variant: Variant, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=variant.tree,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed in {variant.tree}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _group_cpu_seconds(groups: set[int]) -> float:
    """CPU seconds (user + system) of every live process in these process groups (Linux /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# --- clients ------------------------------------------------------------------------------------


def _login(node: tuple[str, int], name: str, local_address: str) -> dict[str, str]:
    """Sign in through the login page as a browser does; returns the cookies (sessionid, csrftoken).

    The sign-in view allows few POSTs per address and minute, so users sign in from different
    loopback addresses.
    """
    base = f"http://{node[0]}:{node[1]}"
    transport = httpx.HTTPTransport(local_address=local_address)
    with httpx.Client(base_url=base, transport=transport, timeout=30) as client:
        page = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or token is None:
            raise RuntimeError(f"login page of {base}: {page.status_code}")
        answer = client.post(
            "/accounts/login/",
            data={"username": name, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{base}/accounts/login/"},
        )
        if answer.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"{name} could not sign in on {base}: {answer.status_code}")
        return {c.name: c.value for c in client.cookies.jar if c.value is not None}


def _session_check(node: tuple[str, int], name: str, cookies: dict[str, str]) -> dict[str, str] | None:
    """Open the demo page as the signed-in user (it sets the CSRF cookie the page posts with);
    None when the session is not signed in there."""
    base = f"http://{node[0]}:{node[1]}"
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    page = httpx.get(f"{base}/streams/{STREAM}/", headers={"Cookie": cookie}, timeout=30)
    if page.status_code != 200 or f"Say something, {name}" not in page.text:
        return None
    return {**cookies, **{c.name: c.value for c in page.cookies.jar if c.value is not None}}


def session_users(variant: Variant, names: list[str]) -> list[str]:
    """Half of the users, spread over both kinds and both nodes: users 0, 1, 4, 5, 8, 9, ..."""
    return [name for i, name in enumerate(names) if (i // 2) % 2 == 0]


def sign_in(variant: Variant, nodes: list[tuple[str, int]], names: list[str]) -> None:
    """Make sure every session user has a signed-in session (sign in again where it is gone)."""
    wanted = session_users(variant, names)

    def one(index: int, name: str) -> tuple[str, dict[str, str]]:
        node = nodes[names.index(name) % len(nodes)]
        cookies = variant.cookies.get(name)
        if cookies:
            checked = _session_check(node, name, cookies)
            if checked:
                return name, checked
        cookies = _login(node, name, f"127.0.0.{10 + index // 5}")
        return name, _session_check(node, name, cookies) or cookies

    with ThreadPoolExecutor(8) as pool:
        variant.cookies.update(dict(pool.map(lambda item: one(*item), enumerate(wanted))))


def build_users(variant: Variant, names: list[str], nodes: list[tuple[str, int]]) -> list[User]:
    users = []
    for i, name in enumerate(names):
        node = i % len(nodes)
        host, port = nodes[node]
        cookies = variant.cookies.get(name)
        if cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
            headers = f"Cookie: {cookie}\r\nX-CSRFToken: {cookies['csrftoken']}\r\nOrigin: http://{host}:{port}\r\n"
            users.append(User(name=name, kind="session", node=node, headers=headers.encode()))
        else:
            token = variant.tokens[name]
            users.append(User(name=name, kind="token", node=node, headers=f"Authorization: Token {token}\r\n".encode()))
    return users


# --- measurements -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> float:
    return round(1000 * value, 1) if not math.isnan(value) else math.nan


@dataclass
class StreamState:
    """What PostgreSQL holds about the bench stream after a phase."""

    comments: dict[str, tuple[str, int | None, float, float | None]]  # tag -> (status, seq, created, published)
    events_per_comment: collections.Counter[str]  # comment id -> comment.created events
    tag_ids: dict[str, str]
    gaps: int  # sequence numbers missing between 1 and the stream's head
    head: int


def stream_state(dbs: Databases, database: str) -> StreamState:
    with dbs.connect(database) as conn:
        stream = conn.execute("SELECT id, last_seq FROM realtime_stream WHERE slug = %s", [STREAM]).fetchone()
        assert stream is not None, f"no stream {STREAM}"
        stream_id, head = stream
        rows = conn.execute(
            "SELECT id::text, split_part(body, ' ', 1), status, seq, extract(epoch FROM created_at),"
            " extract(epoch FROM published_at) FROM comments_comment WHERE stream_id = %s",
            [stream_id],
        ).fetchall()
        events = conn.execute(
            "SELECT seq, type, payload->>'id' FROM realtime_streamevent WHERE stream_id = %s", [stream_id]
        ).fetchall()
    seqs = {seq for seq, _, _ in events}
    return StreamState(
        comments={
            tag: (status, seq, float(c), float(p) if p is not None else None) for _, tag, status, seq, c, p in rows
        },
        events_per_comment=collections.Counter(cid for _, kind, cid in events if kind == "comment.created"),
        tag_ids={tag: cid for cid, tag, *_ in rows},
        gaps=sum(1 for n in range(1, (max(seqs) if seqs else 0) + 1) if n not in seqs),
        head=head,
    )


def published_count(dbs: Databases, database: str, prefix: str) -> tuple[int, int]:
    """(published, total) of this phase's comments."""
    with dbs.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE c.status = 'published'), count(*) FROM comments_comment c"
            " JOIN realtime_stream s ON s.id = c.stream_id WHERE s.slug = %s AND c.body LIKE %s",
            [STREAM, prefix + "%"],
        ).fetchone()
    assert row is not None  # an aggregate always returns its row
    return row[0], row[1]


async def wait_published(dbs: Databases, database: str, prefix: str, *, deadline: float) -> tuple[int, float | None]:
    """Poll until every comment of the phase is published or the deadline passes.

    Returns how many are published, and the wall time when all were seen published (or None)."""
    while True:
        published, total = await asyncio.to_thread(published_count, dbs, database, prefix)
        if total and published == total:
            return published, time.time()
        if time.time() > deadline:
            return published, None
        await asyncio.sleep(0.25)


class Subscribers:
    """WebSocket subscribers of the bench stream over both nodes (``bench.load_client``)."""

    def __init__(self, processes: int) -> None:
        self.client = LoadClient(processes)
        self.count = 0

    async def open(self, nodes: list[tuple[str, int]], count: int) -> None:
        urls = [
            f"ws://{nodes[i % len(nodes)][0]}:{nodes[i % len(nodes)][1]}/ws/streams/{STREAM}/" for i in range(count)
        ]
        await self.client.open(urls)
        self.count = count

    async def wait(self, expected: int, *, timeout: float, quiet: float = 5.0) -> list[SocketReport]:
        """Until ``expected`` frames arrived, or none for ``quiet`` seconds, or the timeout."""
        deadline = time.monotonic() + timeout
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            received = await self.client.received()
            if received >= expected:
                break
            if received != last:
                last, quiet_since = received, time.monotonic()
            elif time.monotonic() - quiet_since > quiet:
                break
            await asyncio.sleep(0.2)
        return await self.client.collect()

    async def reset(self) -> None:
        await self.client.reset()

    async def close(self) -> None:
        await self.client.close()


def delivery_quality(reports: list[SocketReport], expected: set[int]) -> dict[str, int]:
    lost = duplicated = reordered = received = 0
    for sock in reports:
        got = [s for s in sock.seqs if s in expected]
        unique = set(got)
        received += len(got)
        lost += len(expected - unique)
        duplicated += len(got) - len(unique)
        reordered += sum(1 for a, b in itertools.pairwise(got) if b < a)
    return {"received": received, "lost": lost, "duplicated": duplicated, "reordered": reordered}


def post_summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """Statuses, errors and HTTP answer times of a phase's POSTs."""
    statuses = collections.Counter(o.status for o in outcomes if o.status)
    errors = collections.Counter(o.error for o in outcomes if o.error)
    answered = [o for o in outcomes if o.status]
    by_kind = {
        kind: [o.answered - o.sent for o in answered if o.kind == kind] for kind in sorted({o.kind for o in outcomes})
    }
    sent = [o.sent for o in outcomes if o.sent]
    lags = [o.sent - o.scheduled for o in outcomes if o.sent]
    return {
        "posted": len(outcomes),
        "status_202": statuses.get(202, 0),
        "status_503": statuses.get(503, 0),
        "status_503_with_retry_after": sum(1 for o in answered if o.status == 503 and o.retry_after),
        "status_500": sum(n for s, n in statuses.items() if s >= 500 and s != 503),
        "status_other": {str(s): n for s, n in statuses.items() if s not in (202, 503) and s < 500},
        "connect_errors": errors.get("connect", 0),
        "resets": errors.get("reset", 0),
        "timeouts": errors.get("timeout", 0),
        "unsent": errors.get("unsent", 0),
        "keepalive_resends": sum(1 for o in outcomes if o.resent),
        "post_p50_ms": ms(percentile([o.answered - o.sent for o in answered], 0.5)),
        "post_p99_ms": ms(percentile([o.answered - o.sent for o in answered], 0.99)),
        **{f"post_{kind}_p99_ms": ms(percentile(values, 0.99)) for kind, values in by_kind.items()},
        "send_lag_p99_ms": ms(percentile(lags, 0.99)),
        "send_lag_max_ms": ms(max(lags, default=math.nan)),
        "first_sent": min(sent, default=math.nan),
        "last_sent": max(sent, default=math.nan),
        "last_202": max((o.answered for o in answered if o.status == 202), default=math.nan),
    }


# --- phases -------------------------------------------------------------------------------------


@dataclass
class PhaseContext:
    args: argparse.Namespace
    variant: Variant
    dbs: Databases
    database: str
    stack: Stack
    redis: RedisServer
    names: list[str]
    posters: PosterPool
    users: list[User] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/api/v1/streams/{STREAM}/comments"


def rate_schedule(count: int, rate: float, users: list[int], prefix: str) -> list[tuple[float, int, str]]:
    return [(i / rate, users[i % len(users)], f"{prefix}{i}") for i in range(count)]


async def post(ctx: PhaseContext, schedule: list[tuple[float, int, str]], **options: Any) -> dict[str, Any]:
    """Run a schedule on the posters; returns the POST summary plus the posters' own cost."""
    reports = await ctx.posters.run(users=ctx.users, nodes=ctx.stack.nodes, path=ctx.path, schedule=schedule, **options)
    outcomes = [o for r in reports for o in r.outcomes]
    summary = post_summary(outcomes)
    cpu = sum(r.cpu_seconds for r in reports)
    summary["client_cpu_us_per_post"] = round(1e6 * cpu / max(len(outcomes), 1), 1)
    # The posters' CPU spread over the time they were sending: what they took from the server.
    sending = summary["last_sent"] - summary["first_sent"]
    summary["client_cores_while_sending"] = round(cpu / sending, 3) if sending > 0 else math.nan
    summary["client_connections_opened"] = sum(r.connections_opened for r in reports)
    summary["_outcomes"] = outcomes
    return summary


async def warm_up(ctx: PhaseContext, subscribers: Subscribers, user_indexes: list[int]) -> float:
    """20 comments at 20/s, then wait for them everywhere; returns the slowest receipt (seconds)."""
    count = ctx.args.warmup
    await post(ctx, rate_schedule(count, 20.0, user_indexes, "w."), start_in=0.2)
    reports = await subscribers.wait(count * subscribers.count, timeout=60)
    await subscribers.reset()
    return max((lat for sock in reports for lat in sock.latencies), default=math.nan)


def _finish(
    result: dict[str, Any], posted: dict[str, Any], state: StreamState, reports: list[SocketReport], prefix: str
) -> set[int]:
    """Add what happened to the phase's comments (tags starting with ``prefix``): the POST summary,
    published / pending / exactly-once counts from PostgreSQL, and what the subscribers received.
    Returns the sequence numbers of the phase's published comments."""
    result.update({k: v for k, v in posted.items() if not k.startswith("_")})
    mine = {tag: row for tag, row in state.comments.items() if tag.startswith(prefix)}
    published = [row for row in mine.values() if row[0] == "published"]
    events = state.events_per_comment
    result["accepted_by_server"] = len(mine)
    result["published"] = len(published)
    result["pending"] = sum(1 for row in mine.values() if row[0] == "pending")
    result["published_exactly_once"] = sum(
        1 for tag, row in mine.items() if row[0] == "published" and events[state.tag_ids[tag]] == 1
    )
    result["published_twice_or_more"] = sum(1 for tag in mine if events[state.tag_ids[tag]] > 1)
    result["sequence_gaps"] = state.gaps
    first = posted.get("first_sent", math.nan)
    last_published = max((row[3] for row in published if row[3] is not None), default=math.nan)
    result["last_published_after_s"] = round(last_published - first, 3)
    result["all_published_after_s"] = result["last_published_after_s"] if result["pending"] == 0 else math.nan
    expected = {row[1] for row in published if row[1] is not None}
    result.update(delivery_quality(reports, expected))
    latencies = [lat for sock in reports for lat in sock.latencies]
    result["receipt_p50_ms"] = ms(percentile(latencies, 0.5))
    result["receipt_p99_ms"] = ms(percentile(latencies, 0.99))
    last_receipt = max((sock.last_at for sock in reports if sock.seqs), default=math.nan)
    result["all_received_after_s"] = round(last_receipt - first, 3) if expected else math.nan
    return expected


async def phase_sustained(ctx: PhaseContext, rate: float) -> dict[str, Any]:
    args = ctx.args
    subscribers = Subscribers(args.client_processes)
    try:
        await subscribers.open(ctx.stack.nodes, args.sustained_subscribers)
        everyone = list(range(len(ctx.users)))
        cold = await warm_up(ctx, subscribers, everyone)
        count = int(rate * args.duration)
        groups = ctx.stack.process_groups()
        cpu_before = _group_cpu_seconds(groups)
        profilers = ctx.stack.profile(args.profile, f"{rate:.0f}", seconds=args.duration) if args.profile else []
        posted = await post(
            ctx,
            rate_schedule(count, rate, everyone, "m."),
            max_connections_per_user=args.connections_per_user,
            deadline=time.time() + 1 + count / rate + args.drain,
        )
        published, _ = await wait_published(ctx.dbs, ctx.database, "m.", deadline=time.time() + args.drain)
        reports = await subscribers.wait(published * subscribers.count, timeout=args.drain)
        cpu = _group_cpu_seconds(groups) - cpu_before
        for profiler in profilers:
            await asyncio.to_thread(profiler.wait, 60)
        state = await asyncio.to_thread(stream_state, ctx.dbs, ctx.database)
    finally:
        await subscribers.close()
    result: dict[str, Any] = {"offered_per_s": rate, "subscribers": subscribers.count, "warmup_slowest_ms": ms(cold)}
    expected = _finish(result, posted, state, reports, "m.")
    first = posted["first_sent"]
    span_sent = posted["last_sent"] - first
    result["sent_per_s"] = round(count / span_sent, 1) if span_sent > 0 else math.nan
    result["accepted_per_s"] = round(posted["status_202"] / max(posted["last_202"] - first, 1e-6), 1)
    delivering = result["all_received_after_s"]
    result["delivered_per_s"] = round(len(expected) / delivering, 1) if expected and delivering > 0 else 0.0
    result["server_cpu_ms_per_post"] = round(1000 * cpu / max(count, 1), 2)
    result["server_cpu_ms_per_202"] = round(1000 * cpu / max(posted["status_202"], 1), 2)
    result["pass"] = bool(
        posted["status_202"] == count
        and result["pending"] == 0
        and result["lost"] == result["duplicated"] == result["reordered"] == 0
        and result["sequence_gaps"] == 0
        and result["receipt_p99_ms"] < 500
    )
    return result


async def phase_burst(ctx: PhaseContext, size: int) -> dict[str, Any]:
    args = ctx.args
    subscribers = Subscribers(args.client_processes)
    users = list(range(min(args.burst_users, len(ctx.users))))
    per_user = math.ceil(size / len(users))
    try:
        await subscribers.open(ctx.stack.nodes, args.sustained_subscribers)
        await warm_up(ctx, subscribers, list(range(len(ctx.users))))
        schedule = [(0.0, users[i % len(users)], f"b.{i}") for i in range(size)]
        # Time to open the connections first (uvicorn closes idle ones after 5 s).
        posted = await post(ctx, schedule, max_connections_per_user=per_user, prewarm=per_user, start_in=3.0)
        published, _ = await wait_published(ctx.dbs, ctx.database, "b.", deadline=time.time() + args.drain)
        reports = await subscribers.wait(published * subscribers.count, timeout=args.drain)
        state = await asyncio.to_thread(stream_state, ctx.dbs, ctx.database)
    finally:
        await subscribers.close()
    result: dict[str, Any] = {"burst": size, "users": len(users), "subscribers": subscribers.count}
    _finish(result, posted, state, reports, "b.")
    result["pass"] = bool(
        posted["status_202"] == size
        and result["pending"] == 0
        and result["all_published_after_s"] <= 5.0
        and result["sequence_gaps"] == 0
        and result["lost"] == result["duplicated"] == result["reordered"] == 0
    )
    return result


async def phase_latency(ctx: PhaseContext) -> dict[str, Any]:
    args = ctx.args
    subscribers = Subscribers(args.client_processes)
    sessions = [i for i, user in enumerate(ctx.users) if user.kind == "session"]
    try:
        await subscribers.open(ctx.stack.nodes, args.latency_subscribers)
        await asyncio.sleep(1.0)  # let every subscription settle
        cold = await warm_up(ctx, subscribers, sessions)
        posted = await post(ctx, rate_schedule(args.latency_comments, 20.0, sessions, "l."), start_in=0.2)
        await wait_published(ctx.dbs, ctx.database, "l.", deadline=time.time() + args.drain)
        reports = await subscribers.wait(args.latency_comments * subscribers.count, timeout=args.drain)
        state = await asyncio.to_thread(stream_state, ctx.dbs, ctx.database)
    finally:
        await subscribers.close()
    result: dict[str, Any] = {"subscribers": subscribers.count, "rate_per_s": 20.0, "comments": args.latency_comments}
    _finish(result, posted, state, reports, "l.")
    result["cold_start_ms"] = ms(cold)
    result["pass"] = bool(
        posted["status_202"] == args.latency_comments
        and result["lost"] == result["duplicated"] == result["reordered"] == 0
        and result["receipt_p99_ms"] < 50
    )
    return result


async def phase_restart(ctx: PhaseContext) -> dict[str, Any]:
    args = ctx.args
    subscribers = Subscribers(args.client_processes)
    count = args.restart_comments
    try:
        await subscribers.open(ctx.stack.nodes, args.sustained_subscribers)
        everyone = list(range(len(ctx.users)))
        await warm_up(ctx, subscribers, everyone)
        ctx.stack.signal_workers(signal.SIGSTOP)
        posted = await post(ctx, rate_schedule(count, args.restart_rate, everyone, "r."), start_in=0.2)
        ctx.redis.kill()
        ctx.redis.restart()
        resumed = time.time()
        ctx.stack.signal_workers(signal.SIGCONT)
        published, healed_at = await wait_published(ctx.dbs, ctx.database, "r.", deadline=resumed + args.heal_deadline)
        reports = await subscribers.wait(published * subscribers.count, timeout=30)
        state = await asyncio.to_thread(stream_state, ctx.dbs, ctx.database)
    finally:
        await subscribers.close()
    result: dict[str, Any] = {"comments": count, "heal_deadline_s": args.heal_deadline}
    _finish(result, posted, state, reports, "r.")
    result["healed_after_s"] = round(healed_at - resumed, 2) if healed_at else math.nan
    result["pass"] = bool(
        posted["status_202"] == count
        and result["published_exactly_once"] == count
        and result["sequence_gaps"] == 0
        and result["lost"] == result["duplicated"] == result["reordered"] == 0
    )
    return result


# --- the run ------------------------------------------------------------------------------------


def export_baseline(target: Path) -> Path:
    """The baseline commit's tree, as ``git archive`` exports it (no .git, no untracked files)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_COMMIT], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(
            f"cannot export the baseline {BASELINE_COMMIT}: {archive.stderr.decode().strip()}"
            " (a shallow clone? `git fetch --unshallow`)"
        )
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def prepare(variant: Variant, dbs: Databases, names: list[str], work_dir: Path) -> None:
    """Template database of a variant: migrated from its own tree, demo data, users, sessions."""
    dbs.create(variant.template)
    redis = RedisServer(f"writepath-{variant.label}-redis").start().wait_ready()
    stack = Stack(variant, database_url=dbs.url(variant.template), redis_url=redis.url, work_dir=work_dir)
    try:
        env = stack.env
        _manage(variant, env, "migrate", "--noinput")
        _manage(variant, env, "collectstatic", "--noinput", "-v0")
        _manage(variant, env, "stream_create", "demo", "--title", "Demo stream")
        _manage(variant, env, "stream_create", STREAM, "--title", "Write-path benchmark")
        env = {**env, "BENCH_USERS": str(len(names)), "BENCH_PASSWORD": PASSWORD}
        output = _manage(variant, env, "shell", "-c", USERS_SCRIPT)
        variant.tokens = json.loads(output.split("BENCH-USERS ", 1)[1].splitlines()[0])
        # Sign the session users in once, on the template: every phase's copy keeps the sessions.
        stack.start(nodes_only=True)
        sign_in(variant, stack.nodes, names)
    finally:
        stack.stop()
        redis.kill()


async def run_phase(
    args: argparse.Namespace,
    variant: Variant,
    dbs: Databases,
    names: list[str],
    work_dir: Path,
    body: Callable[[PhaseContext], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    database = variant.database
    await asyncio.to_thread(dbs.create, database, template=variant.template)
    redis = RedisServer(f"writepath-{variant.label}-redis").start().wait_ready()
    stack = Stack(variant, database_url=dbs.url(database), redis_url=redis.url, work_dir=work_dir)
    posters = PosterPool(args.client_processes)
    try:
        await asyncio.to_thread(stack.start)
        await asyncio.to_thread(sign_in, variant, stack.nodes, names)
        ctx = PhaseContext(args, variant, dbs, database, stack, redis, names, posters)
        ctx.users = build_users(variant, names, stack.nodes)
        return await body(ctx)
    finally:
        posters.close()
        stack.stop()
        redis.kill()
        await asyncio.to_thread(dbs.drop, database)


def phases(args: argparse.Namespace) -> list[tuple[str, Callable[[PhaseContext], Awaitable[dict[str, Any]]]]]:
    chosen: list[tuple[str, Callable[[PhaseContext], Awaitable[dict[str, Any]]]]] = []
    for name in args.phases:
        if name == "sustained":
            for rate in args.rates:
                chosen.append((f"sustained {rate:g}/s", partial(phase_sustained, rate=rate)))
        elif name == "burst":
            for size in args.bursts:
                chosen.append((f"burst {size}", partial(phase_burst, size=size)))
        elif name == "latency":
            chosen.append(("latency", phase_latency))
        elif name == "restart":
            chosen.append(("restart", phase_restart))
    return chosen


# Rows of the table per phase kind: (result key, label). Ratios are candidate / baseline.
ANSWERS = [
    ("status_202", "202"),
    ("status_503", "503"),
    ("status_503_with_retry_after", "503 with Retry-After"),
    ("status_500", "500 and other 5xx"),
    ("status_other", "other statuses"),
    ("connect_errors", "connection errors"),
    ("resets", "connections reset"),
    ("timeouts", "timeouts (30 s)"),
    ("unsent", "never sent"),
]
DELIVERY = [
    ("accepted_by_server", "stored by the server (any answer)"),
    ("published", "published"),
    ("pending", "still pending at the end"),
    ("received", "received (all subscribers)"),
    ("lost", "lost deliveries"),
    ("duplicated", "duplicated deliveries"),
    ("reordered", "reordered deliveries"),
    ("sequence_gaps", "sequence gaps"),
]
POST_TIMES = [
    ("post_p50_ms", "POST answer p50 ms"),
    ("post_p99_ms", "POST answer p99 ms"),
    ("post_session_p99_ms", "  session clients p99 ms"),
    ("post_token_p99_ms", "  token clients p99 ms"),
]
ROWS: dict[str, list[tuple[str, str]]] = {
    "sustained": [
        ("offered_per_s", "offered comments/s"),
        ("sent_per_s", "sent/s (client)"),
        ("accepted_per_s", "accepted (202)/s"),
        ("delivered_per_s", "published+received/s"),
        *ANSWERS,
        *DELIVERY,
        ("receipt_p50_ms", "POST-to-receipt p50 ms"),
        ("receipt_p99_ms", "POST-to-receipt p99 ms"),
        *POST_TIMES,
        ("send_lag_p99_ms", "client send lag p99 ms"),
        ("client_connections_opened", "connections opened by the client"),
        ("server_cpu_ms_per_post", "stack CPU ms per POST"),
        ("server_cpu_ms_per_202", "stack CPU ms per 202"),
        ("client_cpu_us_per_post", "poster CPU us per POST"),
        ("client_cores_while_sending", "poster CPU, cores while sending"),
        ("pass", "PASS"),
    ],
    "burst": [
        ("burst", "comments at once"),
        *ANSWERS,
        *DELIVERY,
        ("all_published_after_s", "all published after s"),
        ("all_received_after_s", "all received after s"),
        *POST_TIMES,
        ("pass", "PASS"),
    ],
    "latency": [
        ("subscribers", "subscribers"),
        ("status_202", "202"),
        ("receipt_p50_ms", "POST-to-receipt p50 ms"),
        ("receipt_p99_ms", "POST-to-receipt p99 ms"),
        ("cold_start_ms", "cold start (slowest warm-up) ms"),
        *DELIVERY[3:7],
        *POST_TIMES[:2],
        ("pass", "PASS"),
    ],
    "restart": [
        ("comments", "comments posted (workers stalled)"),
        ("status_202", "202"),
        ("published_exactly_once", "published exactly once"),
        ("published_twice_or_more", "published twice or more"),
        ("pending", "still pending at the end"),
        ("sequence_gaps", "sequence gaps"),
        ("healed_after_s", "healed after s (from SIGCONT)"),
        *DELIVERY[3:7],
        ("pass", "PASS"),
    ],
}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "0"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(candidate: Any, baseline: Any) -> str:
    if isinstance(candidate, bool) or not isinstance(candidate, int | float) or not isinstance(baseline, int | float):
        return ""
    if math.isnan(candidate) or math.isnan(baseline) or baseline == 0:
        return ""
    return f"{candidate / baseline:.2f}x"


def print_table(results: dict[str, dict[str, dict[str, Any]]], variants: list[Variant]) -> None:
    labels = [v.label for v in variants]
    servers = sorted({v.server for v in variants})
    for phase, by_variant in results.items():
        rows = ROWS[phase.split()[0]]
        header = f"\n== {phase} " + "=" * max(0, 90 - len(phase))
        print(header)
        columns = []
        for server in servers:
            pair = [label for label in labels if label.endswith(f"-{server}")]
            columns += pair
            if len(pair) == 2:
                columns.append(f"ratio-{server}")
        print(f"{'':<36}" + "".join(f"{c:>22}" for c in columns))
        for key, label in rows:
            cells = []
            for column in columns:
                if column.startswith("ratio-"):
                    server = column.removeprefix("ratio-")
                    base = by_variant.get(f"baseline-{server}", {}).get(key)
                    cand = by_variant.get(f"candidate-{server}", {}).get(key)
                    cells.append(_ratio(cand, base))
                else:
                    cells.append(_cell(by_variant.get(column, {}).get(key, "")))
            print(f"{label:<36}" + "".join(f"{c:>22}" for c in cells))
        for label, result in sorted(by_variant.items()):
            if "error" in result:
                print(f"{label} could not run this phase: {result['error']}")


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("sustained", "delivered_per_s", "comments/s published and received\n(dashed: offered)", "offered_per_s"),
        ("burst", "all_published_after_s", "seconds until all published\n(dashed: 5 s; no bar: not all)", 5.0),
        ("latency", "receipt_p99_ms", "p99 POST-to-receipt, ms\n(dashed: 50 ms)", 50.0),
        (
            "restart",
            "published_exactly_once",
            "Redis restart: published exactly once\n(dashed: all posted)",
            "comments",
        ),
    ]
    chosen = [(phase, panel) for panel in panels for phase in results if phase.split()[0] == panel[0]]
    columns = min(4, len(chosen))
    rows = math.ceil(len(chosen) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat[len(chosen) :]:
        axis.set_visible(False)
    for axis, (phase, (_, key, title, target)) in zip(axes.flat, chosen, strict=False):
        labels = list(results[phase])
        values = [results[phase][label].get(key, math.nan) for label in labels]
        values = [0.0 if isinstance(v, float) and math.isnan(v) else float(v) for v in values]
        colors = ["#999" if label.startswith("baseline") else "#2a7" for label in labels]
        bars = axis.bar([label.replace("-", "\n", 1) for label in labels], values, color=colors)
        accepted = [results[phase][label].get("status_202") for label in labels]
        notes = [
            f"{v:.4g}\n({a:,} x 202)" if a is not None else "failed" for v, a in zip(values, accepted, strict=True)
        ]
        axis.bar_label(bars, labels=notes, fontsize=7)
        goal = results[phase][labels[0]].get(target) if isinstance(target, str) else target
        if goal:
            axis.axhline(goal, color="#c33", linestyle="--", linewidth=1)
        axis.set_title(f"{phase}: {title}", fontsize=8)
        axis.margins(y=0.15)
        axis.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _clean_environment() -> list[str]:
    """Keep the caller's Chorus settings away from the stacks: they run the default configuration."""
    dropped = sorted(k for k in os.environ if k.startswith(CONFIG_PREFIXES) or k in CONFIG_NAMES)
    for key in dropped:
        del os.environ[key]
    return dropped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (about 3 minutes for two variants)")
    parser.add_argument("--server", choices=["default", "uvicorn", "daphne", "both"], default="default",
                        help="CHORUS_ASGI_SERVER of the nodes (default: leave scripts/serve.sh's default)")  # fmt: skip
    parser.add_argument("--variants", default="baseline,candidate")
    parser.add_argument("--phases", default="sustained,burst,latency,restart")
    parser.add_argument("--rates", default="1000", help="comments/s of the sustained phase (comma-separated)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each sustained rate")
    parser.add_argument("--bursts", default="1000", help="comments posted at once (comma-separated)")
    parser.add_argument("--burst-users", type=int, default=100)
    parser.add_argument("--users", type=int, default=100, help="users posting (half sessions, half tokens)")
    parser.add_argument(
        "--connections-per-user", type=int, default=50, help="most connections a user opens (sustained phase)"
    )
    parser.add_argument("--sustained-subscribers", type=int, default=20)
    parser.add_argument("--latency-subscribers", type=int, default=1000)
    parser.add_argument("--latency-comments", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="comments at 20/s before each phase")
    parser.add_argument("--restart-comments", type=int, default=300)
    parser.add_argument("--restart-rate", type=float, default=100.0)
    parser.add_argument("--heal-deadline", type=float, default=120.0, help="seconds to wait for healing")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for publication after posting")
    parser.add_argument("--client-processes", type=int, default=2, help="poster and subscriber processes, each")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server")
    parser.add_argument("--db-prefix", default="chorus_bench_writepath")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="directory: py-spy profiles (collapsed stacks) of every process while posting"
    )
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.phases = [p for p in args.phases.split(",") if p]
    args.rates = [float(r) for r in args.rates.split(",") if r]
    args.bursts = [int(b) for b in args.bursts.split(",") if b]
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.latency_subscribers = min(args.latency_subscribers, 300)
        args.latency_comments = min(args.latency_comments, 40)
        args.heal_deadline = min(args.heal_deadline, 20.0)
        args.drain = min(args.drain, 10.0)
    return args


async def main_async(args: argparse.Namespace) -> int:
    dbs = Databases(args.pg)
    work_dir = Path(tempfile.mkdtemp(prefix="chorus-bench-writepath-"))
    names = [f"wp{i:03d}" for i in range(args.users)]
    servers = ["uvicorn", "daphne"] if args.server == "both" else [args.server]
    variants = []
    try:
        trees = {"candidate": ROOT}
        if "baseline" in args.variants:
            trees["baseline"] = export_baseline(work_dir / "baseline")
        for server in servers:
            for name in args.variants:
                variants.append(Variant(name=name, tree=trees[name], server=server, db_prefix=args.db_prefix))
        print(f"==> preparing {', '.join(v.label for v in variants)} (databases {args.db_prefix}_*)", flush=True)
        print(f"    load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared)", flush=True)
        for variant in variants:
            await asyncio.to_thread(prepare, variant, dbs, names, work_dir)
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for index, (phase, body) in enumerate(phases(args)):
            results[phase] = {}
            # Alternate which variant goes first, so neither always runs right after a teardown.
            for variant in variants if index % 2 == 0 else variants[::-1]:
                print(f"==> {phase}: {variant.label}", flush=True)
                started = time.monotonic()
                try:
                    result = await run_phase(args, variant, dbs, names, work_dir, body)
                except Exception as exc:  # a variant that cannot run a phase fails it; the run goes on
                    result = {"error": f"{type(exc).__name__}: {exc}", "pass": False}
                    print(f"    FAILED to run: {result['error']}", flush=True)
                result["phase_seconds"] = round(time.monotonic() - started, 1)
                results[phase][variant.label] = result
                if "error" not in result:
                    print(f"    {_one_line(phase, result)}", flush=True)
            results[phase] = {v.label: results[phase][v.label] for v in variants}
        print_table(results, variants)
        print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores, shared)")
        if args.json:
            conditions = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            payload = {"baseline_commit": BASELINE_COMMIT, "conditions": conditions, "results": results,
                       "load_average": os.getloadavg()}  # fmt: skip
            args.json.write_text(json.dumps(payload, indent=2, default=str))
        if args.plot:
            plot(results, args.plot)
            print(f"\nplot: {args.plot}")
        return 0 if all("error" not in r for by_variant in results.values() for r in by_variant.values()) else 1
    finally:
        for variant in variants:
            dbs.drop(variant.template)
        shutil.rmtree(work_dir, ignore_errors=True)


def _one_line(phase: str, r: dict[str, Any]) -> str:
    kind = phase.split()[0]
    statuses = f"202 {r.get('status_202')}, 503 {r.get('status_503')}, 5xx {r.get('status_500')}"
    if kind in ("sustained", "burst"):
        statuses += f", conn err {r.get('connect_errors')}, reset {r.get('resets')}, timeout {r.get('timeouts')}"
    tail = {
        "sustained": f"delivered {_cell(r.get('delivered_per_s'))}/s, p99 receipt {_cell(r.get('receipt_p99_ms'))} ms",
        "burst": f"all published after {_cell(r.get('all_published_after_s'))} s",
        "latency": f"p99 {_cell(r.get('receipt_p99_ms'))} ms, cold start {_cell(r.get('cold_start_ms'))} ms",
        "restart": f"exactly once {r.get('published_exactly_once')}, pending {r.get('pending')},"
        f" healed after {_cell(r.get('healed_after_s'))} s",
    }[kind]
    return f"{statuses}; published {r.get('published')}, pending {r.get('pending')}; {tail}; pass {_cell(r['pass'])}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dropped = _clean_environment()
    if dropped:
        print(f"==> not passed on to the stacks (default configuration): {', '.join(dropped)}")
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
