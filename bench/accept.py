"""The accept path at the edge: what one ``POST /api/v1/streams/{slug}/comments`` costs a node.

    python bench/accept.py [--quick] [--server uvicorn|daphne|both] [--auth session|token|both]
                           [--rate R] [--count N] [--baseline PATH] [--profile] [--json FILE]

For each source tree (this one, and with ``--baseline PATH`` another checkout, e.g. the commit
before a change: ``git worktree add /tmp/chorus-before <commit>``), each server and each kind of
client, it starts one node the ``make run`` way (``scripts/serve.sh PORT``, default settings but
the per-user comment quota lifted and ``CHORUS_LOG_LEVEL`` left at its default) and measures from
an outside client process:

- serial: one request at a time on one connection: the wall time of a request with no queueing;
- rate: ``--count`` requests at ``--rate`` per second (open loop): statuses, p50/p99, and the
  node's CPU per request (user + system time of the server process / answered requests);
- with ``--profile``, py-spy samples the node during the rate phase, and each sample is charged
  to the innermost stage of the request it belongs to (``STAGES``): a per-stage CPU breakdown.

Session clients post as the demo page does (session cookie, ``X-CSRFToken``, ``Origin``); token
clients send ``Authorization: Token``. No Celery worker runs: the broker queue is emptied between
phases, so queue-depth shedding never fires and the worker's CPU does not blur the node's.
Variants run interleaved, and results are printed as ratios against the baseline of the same run.
Set DATABASE_URL, REDIS_URL, CHORUS_REDIS_PREFIX and CHORUS_TASK_QUEUE to stores of its own.
"""

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402

from bench.http_load import Tally, burst_run, post_request, rate_run, serial_run  # noqa: E402

NODE_ENV = {
    "CHORUS_RATE_LIMITS": '{"regular": {"comments": [1e9, 1e9]}}',
    "CHORUS_TIER_HOT_ABOVE": "1000000000",
    # No worker publishes here (this measures the edge alone), so the publish lag only grows: it
    # must not shed the comments being measured.
    "CHORUS_SHED_PUBLISH_LAG_LOW": "1e9",
    "CHORUS_SHED_PUBLISH_LAG_HIGH": "1e9",
}
BIN = Path(sys.executable).parent


@dataclass
class Credentials:
    token: str
    session: str
    csrf: str


@dataclass
class Result:
    tree: str
    server: str
    auth: str
    serial_p50_ms: float = 0.0
    serial_mean_ms: float = 0.0
    rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    cpu_us_per_request: float = 0.0
    stages_us: dict[str, float] = field(default_factory=dict)  # CPU per request by stage (rate phase)
    serial_stages_ms: dict[str, float] = field(default_factory=dict)  # thread time per request (serial)
    serial_waiting_ms: dict[str, float] = field(default_factory=dict)  # of which blocked (DB, Redis, hops)


def _prepare(users: int) -> tuple[str, list[Credentials]]:
    """A stream and ``users`` users, each with a token and a signed-in session."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.utils.module_loading import import_string
    from rest_framework.authtoken.models import Token

    from realtime.services import stream_create

    slug = f"accept-{uuid.uuid4().hex[:6]}"
    stream_create(slug=slug, title="accept bench")
    store_class = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    credentials = []
    for _ in range(users):
        user = get_user_model().objects.create_user(f"accept-{uuid.uuid4().hex[:10]}", password="bench-password")
        session = store_class()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        token = Token.objects.create(user=user).key
        credentials.append(Credentials(token=token, session=session.session_key, csrf=secrets.token_hex(16)))
    return slug, credentials


def _request_maker(port: int, slug: str, auth: str, credentials: list[Credentials]) -> Callable[[int], bytes]:
    path = f"/api/v1/streams/{slug}/comments"
    run = uuid.uuid4().hex[:8]

    def make(i: int) -> bytes:
        who = credentials[i % len(credentials)]
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"{run}-{i}"}
        if auth == "token":
            headers["Authorization"] = f"Token {who.token}"
        else:
            headers["Cookie"] = f"csrftoken={who.csrf}; sessionid={who.session}"
            headers["X-CSRFToken"] = who.csrf
            headers["Origin"] = f"http://127.0.0.1:{port}"
        body = json.dumps({"body": f"comment {i} of {run}"}).encode()
        return post_request(host="127.0.0.1", port=port, path=path, body=body, headers=headers)

    return make


class Node:
    """One node started as ``make run`` starts it: ``scripts/serve.sh PORT`` in the given tree."""

    def __init__(self, tree: Path, server: str, port: int, *, timed: bool = False) -> None:
        self.tree, self.server, self.port = tree, server, port
        argv = ["scripts/serve.sh", str(port)]
        extra = {}
        if timed:  # the same server and flags as scripts/serve.sh, serving bench/stage_timer.py
            shim = Path("/tmp/accept-bench-shim")
            shim.mkdir(exist_ok=True)
            (shim / "chorus_stage_timer.py").write_text((ROOT / "bench" / "stage_timer.py").read_text())
            extra["PYTHONPATH"] = str(shim)
            app = "chorus_stage_timer:application"
            if server == "daphne":
                argv = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), app]
            else:
                argv = [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--ws",
                        "websockets-sansio", "--loop", "uvloop", "--no-access-log"]  # fmt: skip
        env = {
            **os.environ,
            **NODE_ENV,
            "CHORUS_ASGI_SERVER": server,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "CHORUS_NODE_ID": f"accept-bench-{port}",
            **extra,
        }
        self.log = open(f"/tmp/accept-bench-{port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, cwd=tree, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self) -> "Node":
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node on {self.port} exited; see /tmp/accept-bench-{self.port}.log")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node on {self.port} not ready")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _empty_queue() -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(*settings.CHORUS_SHED_QUEUES)


# --- the per-stage profile ----------------------------------------------------------------------

# A sample is charged to the innermost frame that matches one of these (checked leaf to root), so
# e.g. a session read inside DRF's authentication counts as "session load", the rest of the
# authentication as "DRF authentication". Order matters only between needles of one frame.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("comment_accept (black box)", ("comment_accept (comments/services.py",)),
    ("stream lookup", ("stream_or_404 (",)),
    ("session load", ("sessions/backends/", "get_user (django/contrib/auth/__init__.py")),
    ("token lookup", ("authenticate_credentials (rest_framework/authentication.py", "token_user_id")),
    ("DRF authentication (rest)", ("rest_framework/authentication.py", "perform_authentication")),
    ("CSRF", ("django/middleware/csrf.py",)),
    ("throttle: load shedding", ("load_shed_check (", "queue_depth (")),
    ("throttle: token bucket", ("rate_limit_check (", "project/ratelimit/redis_backend.py")),
    (
        "parsing and validation",
        (
            "rest_framework/parsers.py",
            "rest_framework/serializers.py",
            "rest_framework/fields.py",
            "idempotency_key (",
            "_load_data_and_files",
        ),
    ),
    (
        "response rendering",
        ("rest_framework/renderers.py", "finalize_response", "rest_framework/response.py", "build_absolute_uri"),
    ),
    ("DRF view dispatch (rest)", ("rest_framework/views.py", "rest_framework/request.py")),
    ("middleware: sessions", ("django/contrib/sessions/middleware.py",)),
    ("middleware: auth", ("django/contrib/auth/middleware.py",)),
    ("middleware: messages", ("django/contrib/messages/",)),
    ("middleware: whitenoise", ("whitenoise/",)),
    ("middleware: common", ("django/middleware/common.py",)),
    ("middleware: security", ("django/middleware/security.py",)),
    ("middleware: clickjacking", ("django/middleware/clickjacking.py",)),
    ("middleware: ServiceUnavailable", ("project/middleware.py",)),
    ("middleware: gateway", ("gateway/middleware.py", "gateway/db_router.py", "gateway/headers.py")),
    (
        "Django handler and URL resolution",
        (
            "django/core/handlers/",
            "django/urls/",
            "django/http/",
            "django/utils/deprecation.py",
            "django/dispatch/",
            "django/db/__init__.py",
        ),
    ),
    ("thread hops (asgiref, executor)", ("asgiref/", "concurrent/futures/", "threading.py")),
    (
        "server (uvicorn/daphne/Twisted, asyncio)",
        (
            "uvicorn/",
            "daphne/",
            "twisted/",
            "asyncio/",
            "uvloop",
            "h11/",
            "autobahn/",
            "reactions/fast_taps.py",
            "realtime/nodes.py",
        ),
    ),
]


# A thread with nothing to do: an executor's worker waiting for work, an event loop in its poll.
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py",
    "Runner.run (asyncio/runners.py",
    "asyncio_run (",
    "doPoll (twisted/",
    "EPollReactor.doPoll",
    "_serve_forever",
)
# Blocked inside a request (a database or Redis answer, a thread hop): wall time, not CPU.
WAIT_LEAVES = (
    "Condition.wait (",
    "Event.wait (",
    "Thread.join (",
    "_wait_for_tstate_lock (",
    "(psycopg/waiting.py",
    "Connection.wait (psycopg",
    "_read_from_socket (redis",
    "select (",
    "SimpleQueue.get",
    "getconn (psycopg_pool",
    "WaitingClient.wait (",
)
PROFILE_RATE = 250


def _stage_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, needles in STAGES:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def profile_stages(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Samples per stage in a py-spy ``raw --idle`` profile: (on CPU, blocked in a request)."""
    cpu: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack.strip():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if any(needle in leaf for needle in IDLE_LEAVES):
            continue
        (waiting if any(needle in leaf for needle in WAIT_LEAVES) else cpu)[_stage_of(stack)] += int(count)
    return cpu, waiting


def _py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--format",
         "raw", "--output", str(out), "--rate", str(PROFILE_RATE), "--nonblocking", "--idle"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# --- one measurement ----------------------------------------------------------------------------


async def measure(tree: Path, server: str, auth: str, args: argparse.Namespace, ctx: dict[str, Any]) -> Result:
    port = _free_port()
    node = Node(tree, server, port).wait_ready()
    result = Result(tree=str(tree), server=server, auth=auth)
    label = f"{Path(tree).name}-{server}-{auth}"
    try:
        make = _request_maker(port, ctx["slug"], auth, ctx["credentials"])
        _empty_queue()
        warm = await rate_run("127.0.0.1", port, make, rate=args.rate, count=args.warmup, connections=args.connections)
        if warm.statuses.get(202, 0) < args.warmup * 0.9:
            raise RuntimeError(f"warm-up failed: {warm.summary()}")

        serial_path = Path(f"/tmp/accept-serial-{label}.txt")
        spy = _py_spy(node.proc.pid, args.serial_seconds, serial_path) if args.profile else None
        serial = Tally()
        deadline = time.monotonic() + args.serial_seconds
        while time.monotonic() < deadline:
            part = await serial_run("127.0.0.1", port, make, count=50)
            serial.latencies += part.latencies
            serial.statuses.update(part.statuses)
        result.serial_p50_ms = round(1000 * serial.percentile(0.5), 2)
        result.serial_mean_ms = round(1000 * sum(serial.latencies) / max(1, len(serial.latencies)), 2)
        if spy is not None:
            spy.wait(timeout=120)
            cpu, waiting = profile_stages(serial_path)
            per_request = 1000 / PROFILE_RATE / max(1, len(serial.latencies))  # ms of one thread per sample
            result.serial_stages_ms = {
                name: round(per_request * (cpu[name] + waiting[name]), 3) for name in (cpu + waiting)
            }
            result.serial_waiting_ms = {name: round(per_request * n, 3) for name, n in waiting.items()}

        _empty_queue()
        profile_path = Path(f"/tmp/accept-rate-{label}.txt")
        spy = _py_spy(node.proc.pid, args.count / args.rate, profile_path) if args.profile else None
        cpu_before = node.cpu_seconds()
        outcome = await rate_run(
            "127.0.0.1", port, make, rate=args.rate, count=args.count, connections=args.connections
        )
        cpu_seconds = node.cpu_seconds() - cpu_before
        answered = sum(outcome.statuses.values())
        result.rate = round(answered / outcome.elapsed, 1)
        result.p50_ms = round(1000 * outcome.percentile(0.5), 2)
        result.p99_ms = round(1000 * outcome.percentile(0.99), 2)
        result.statuses = {str(k): v for k, v in outcome.statuses.items()}
        result.failures = dict(outcome.failures)
        result.cpu_us_per_request = round(1e6 * cpu_seconds / max(1, answered), 1)
        if spy is not None:
            spy.wait(timeout=120)
            cpu, _ = profile_stages(profile_path)
            total = sum(cpu.values())
            result.stages_us = {name: round(result.cpu_us_per_request * n / total, 1) for name, n in cpu.most_common()}
        print(f"  {Path(tree).name:>16} {server:8} {auth:8} serial {result.serial_p50_ms:6.2f} ms  "
              f"{outcome.summary()}  cpu {result.cpu_us_per_request:7.1f} us/req", flush=True)  # fmt: skip
    finally:
        node.stop()
        _empty_queue()
    return result


async def measure_stages(
    tree: Path, server: str, auth: str, args: argparse.Namespace, ctx: dict[str, Any]
) -> dict[str, Any]:
    """Exclusive wall time per stage (``bench/stage_timer.py``), requests one at a time."""
    port = _free_port()
    node = Node(tree, server, port, timed=True).wait_ready()
    try:
        make = _request_maker(port, ctx["slug"], auth, ctx["credentials"])
        await rate_run("127.0.0.1", port, make, rate=args.rate, count=args.warmup, connections=args.connections)
        httpx.get(f"http://127.0.0.1:{port}/__stages")  # reset
        outcome = await serial_run("127.0.0.1", port, make, count=args.stage_requests)
        stages = httpx.get(f"http://127.0.0.1:{port}/__stages").json()
    finally:
        node.stop()
        _empty_queue()
    wall = 1000 * sum(outcome.latencies) / max(1, len(outcome.latencies))
    return {"tree": str(tree), "server": server, "auth": auth, "client_wall_ms": round(wall, 3), **stages}


def _print_stages(rows: list[dict[str, Any]]) -> None:
    names = sorted({name for row in rows for name in row["ms_per_request"]},
                   key=lambda n: -max(row["ms_per_request"].get(n, 0) for row in rows))  # fmt: skip
    print("\nwall time per stage, ms per request, one request at a time (exclusive: minus the stages it called)")
    header = "".join(f"{Path(r['tree']).name[:10] + ' ' + r['server'][:3] + ' ' + r['auth'][:3]:>22}" for r in rows)
    print(f"{'stage':62}{header}")
    for name in names:
        print(f"{name[:62]:62}" + "".join(f"{row['ms_per_request'].get(name, 0):22.3f}" for row in rows))
    print(f"{'sum of stages':62}" + "".join(f"{sum(row['ms_per_request'].values()):22.3f}" for row in rows))
    print(f"{'client-side wall':62}" + "".join(f"{row['client_wall_ms']:22.3f}" for row in rows))


def _report(results: list[Result], baseline: str | None) -> None:
    by_key: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        by_key.setdefault((r.tree, r.server, r.auth), []).append(r)

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    columns = f"{'serial p50 ms':>14} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}"
    print(f"\n{'tree':>18} {'server':8} {'auth':8} {columns}")
    for (tree, server, auth), rs in sorted(by_key.items()):
        print(
            f"{Path(tree).name:>18} {server:8} {auth:8} {median([r.serial_p50_ms for r in rs]):14.2f} "
            f"{median([r.p50_ms for r in rs]):8.2f} {median([r.p99_ms for r in rs]):8.2f} "
            f"{median([r.cpu_us_per_request for r in rs]):11.1f}"
        )
    if baseline is None:
        return
    print("\nratios against the baseline (this run; < 1 is better):")
    for (tree, server, auth), rs in sorted(by_key.items()):
        if tree == baseline:
            continue
        base = by_key.get((baseline, server, auth))
        if not base:
            continue
        cpu = median([r.cpu_us_per_request for r in rs]) / median([r.cpu_us_per_request for r in base])
        serial = median([r.serial_p50_ms for r in rs]) / median([r.serial_p50_ms for r in base])
        p99 = median([r.p99_ms for r in rs]) / median([r.p99_ms for r in base])
        print(f"  {server:8} {auth:8} CPU/request {cpu:.2f}x  serial wall {serial:.2f}x  p99 at rate {p99:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round of fewer requests")
    parser.add_argument("--server", choices=["uvicorn", "daphne", "both"], default="both")
    parser.add_argument("--auth", choices=["session", "token", "both"], default="both")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second in the rate phase")
    parser.add_argument("--count", type=int, default=3000, help="requests in the rate phase")
    parser.add_argument("--serial-seconds", type=float, default=6, help="seconds of requests one at a time")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections at most")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (medians are reported)")
    parser.add_argument("--baseline", type=Path, help="another source tree to measure in the same run")
    parser.add_argument("--profile", action="store_true", help="py-spy the node: CPU per stage")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--stages", action="store_true", help="only the per-stage wall times (stage_timer)")
    parser.add_argument("--stage-requests", type=int, default=500)
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.serial_seconds, args.rounds = 1000, 3, 1
    django.setup()
    slug, credentials = _prepare(args.users)
    ctx = {"slug": slug, "credentials": credentials}
    trees = [ROOT] + ([args.baseline.resolve()] if args.baseline else [])
    servers = ["uvicorn", "daphne"] if args.server == "both" else [args.server]
    auths = ["session", "token"] if args.auth == "both" else [args.auth]
    if args.stages:
        rows = []
        for server in servers:
            for auth in auths:
                for tree in trees[::-1]:
                    rows.append(uvloop.run(measure_stages(tree, server, auth, args, ctx)))
        _print_stages(rows)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return 0
    results = []
    for _ in range(args.rounds):
        for server in servers:
            for auth in auths:
                for tree in trees[::-1]:  # the baseline first in each pair
                    results.append(uvloop.run(measure(tree, server, auth, args, ctx)))
    _report(results, str(trees[1]) if len(trees) > 1 else None)
    if args.profile:
        for r in results:
            print(f"\nCPU per stage, us/request: {Path(r.tree).name} {r.server} {r.auth}")
            for name, us in r.stages_us.items():
                print(f"  {name:45} {us:8.1f}")
            print(f"thread time per stage, ms/request, one request at a time (of which blocked): "
                  f"{sum(r.serial_stages_ms.values()):.2f} ms of {r.serial_mean_ms:.2f} ms wall")  # fmt: skip
            for name, ms in sorted(r.serial_stages_ms.items(), key=lambda item: -item[1]):
                print(f"  {name:45} {ms:8.3f} ({r.serial_waiting_ms.get(name, 0):.3f})")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["burst_run", "measure", "profile_stages"]
