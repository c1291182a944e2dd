"""Connection benchmark: how fast one node takes WebSocket clients, and what an idle one costs it.

    python bench/connections.py [--quick] [--server uvicorn|daphne|both] [--sockets N] [--connects M]
                                [--client-processes P] [--concurrency C] [--baseline-ref REF]
                                [--no-baseline] [--no-tutorial] [--no-deflate] [--profile] [--json FILE]

For each variant it starts ONE node as ``make run`` does (``scripts/serve.sh PORT``, default
settings and logging) and drives it from outside, from P client processes (websockets' sans-I/O
client on uvloop, C connects in flight per process):

- memory: N sockets (a third each anonymous, ``?token=`` and session cookie, every one a different
  user) are opened, each gets a few events (``--events``, spaced like live comments), and they stay
  idle; the node's RSS growth divided by N is the cost of an idle subscribed socket. Every
  handshake offers permessage-deflate as browsers (and ``websockets.connect``) do, unless
  ``--no-deflate`` (uvicorn accepts it, daphne does not);
- connect rate: M connects per kind (anonymous, token, session), again every one a different user,
  so no cache of a previous connect helps: a crowd arriving after its node died. A connect counts
  when the handshake is done and the ``hello`` frame has arrived.

Variants, each on uvicorn and/or daphne: ``chorus`` (this tree), the connect path as it was at
``--baseline-ref`` (default 0cf021f, run from a ``git archive`` of that commit with the same
database and settings), and the Channels tutorial consumer (``bench/naive_group_send.py``:
``AuthMiddlewareStack`` and ``group_add`` per socket; it sends no hello, so its connect ends at the
handshake, and it has no token authentication: its token sockets are anonymous ones with a query
string). Ratios are against the baseline ref measured in the same run.

Set DATABASE_URL, REDIS_URL and CHORUS_REDIS_PREFIX to a database and Redis of its own
(``make bench-connections`` does).
"""

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from bench.load_client import ORIGIN, _Socket  # noqa: E402

KINDS = ("anonymous", "token", "session")


# --- the client (runs in child processes) ---------------------------------------------------------


received = [0]  # event frames (with a "seq") taken by this client process


class _Connect(_Socket):
    """One socket of the load client: handshake (with a cookie, offering deflate), then the hello.

    ``handshake`` (the load client's future) is done when the connect is: at the hello frame, or at
    the handshake's response for an application that sends none.
    """

    def __init__(self, url: str, done: "asyncio.Future[bool]", *, cookie: str | None, hello: bool, deflate: bool):
        super().__init__(url, done)
        if deflate:  # what browsers (and websockets.connect by default) offer
            extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=True)]
            self.protocol = ClientProtocol(parse_uri(url), origin=ORIGIN, extensions=extensions, max_size=None)
        self.cookie = cookie
        self.hello = hello

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's: a full Transport
        request = self.protocol.connect()
        if self.cookie:
            request.headers["Cookie"] = self.cookie
        self.protocol.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            text = event.data if isinstance(event, Frame) and event.opcode is Opcode.TEXT else None
            if text is not None and b'"seq"' in text:
                received[0] += 1
            if self.handshake.done():
                continue
            if isinstance(event, Response):
                if self.protocol.handshake_exc is not None:
                    self.handshake.set_result(False)
                elif not self.hello:
                    self.handshake.set_result(True)
            elif text is not None and (b'"hello"' in text or b'"error"' in text):
                self.handshake.set_result(b'"hello"' in text)
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                self.handshake.set_result(False)
        self._flush()

    def close(self) -> None:
        if self.protocol.state is State.OPEN:
            super().close()
        elif self.transport is not None:
            self.transport.close()  # refused: no close handshake to make


async def _open_all(
    specs: list[tuple[str, str | None]], concurrency: int, want_hello: bool, deflate: bool, held: list[Any]
) -> dict[str, Any]:
    """Open every socket, ``concurrency`` at a time; keep them in ``held``."""
    from websockets.uri import parse_uri

    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failed = 0
    first = time.time()

    async def one(url: str, cookie: str | None) -> None:
        nonlocal failed
        uri = parse_uri(url)
        async with semaphore:
            started = time.perf_counter()
            done: asyncio.Future[bool] = loop.create_future()
            try:
                _, sock = await loop.create_connection(
                    lambda: _Connect(url, done, cookie=cookie, hello=want_hello, deflate=deflate), uri.host, uri.port
                )
                ok = await asyncio.wait_for(done, timeout=60)
            except (OSError, TimeoutError):
                failed += 1
                return
            if ok:
                latencies.append(time.perf_counter() - started)
                held.append(sock)
            else:
                failed += 1
                sock.close()

    await asyncio.gather(*(one(url, cookie) for url, cookie in specs))
    return {"ok": len(latencies), "failed": failed, "first": first, "last": time.time(), "latencies": latencies}


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    held: list[Any] = []
    while True:
        command, argument = await loop.run_in_executor(None, conn.recv)
        if command == "open":
            specs, concurrency, want_hello, deflate = argument
            conn.send(await _open_all(specs, concurrency, want_hello, deflate, held))
        elif command == "received":
            conn.send(received[0])
        elif command == "close":
            for sock in held:
                sock.close()
            held.clear()
            await asyncio.sleep(0.2)  # let the close frames leave
            conn.send(None)
        elif command == "quit":
            conn.send(None)
            return


def _client_main(conn: multiprocessing.connection.Connection) -> None:
    import uvloop

    uvloop.run(_serve(conn))


class Clients:
    """Sockets opened and held by ``processes`` child processes, driven over pipes."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def _ask(self, command: str, arguments: list[Any]) -> list[Any]:
        for pipe, argument in zip(self.pipes, arguments, strict=True):
            pipe.send((command, argument))
        return [pipe.recv() for pipe in self.pipes]

    def open(
        self, specs: list[tuple[str, str | None]], *, concurrency: int, want_hello: bool, deflate: bool
    ) -> dict[str, Any]:
        shares = [specs[i :: len(self.pipes)] for i in range(len(self.pipes))]
        replies = self._ask("open", [(share, concurrency, want_hello, deflate) for share in shares])
        return {
            "ok": sum(r["ok"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["last"] for r in replies) - min(r["first"] for r in replies),
            "latencies": sorted(lat for r in replies for lat in r["latencies"]),
        }

    def received(self) -> int:
        return sum(self._ask("received", [None] * len(self.pipes)))

    def close_all(self) -> None:
        self._ask("close", [None] * len(self.pipes))

    def quit(self) -> None:
        try:
            self._ask("quit", [None] * len(self.pipes))
        finally:
            for process in self.processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()


# --- the node -------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    server: str
    tree: Path  # the source tree the node runs from
    app: str | None = None  # None: scripts/serve.sh (project.asgi); else the ASGI app, same server flags
    path: str = "/ws/streams/{slug}/"
    hello: bool = True
    token_auth: bool = True


def _node_argv(variant: Variant, port: int) -> list[str]:
    if variant.app is None:
        return ["scripts/serve.sh", str(port)]
    if variant.server == "daphne":
        return ["daphne", "-b", "127.0.0.1", "-p", str(port), variant.app]
    return ["uvicorn", variant.app, "--host", "127.0.0.1", "--port", str(port), "--ws", "websockets-sansio",
            "--ws-per-message-deflate", "false", "--loop", "uvloop", "--no-access-log"]  # fmt: skip


class Node:
    def __init__(self, variant: Variant) -> None:
        from tests.support.processes import ARTIFACTS, free_port

        self.port = free_port()
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"bench-connections-{variant.name}-{variant.server}.log"
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "CHORUS_ASGI_SERVER": variant.server,
            "CHORUS_NODE_POOL": f"bench-{uuid.uuid4().hex[:6]}",
            "PYTHONPATH": str(variant.tree),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                _node_argv(variant, self.port), cwd=variant.tree, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> "Node":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("node did not answer /healthz")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def settled_rss(self, *, timeout: float = 15) -> int:
        """RSS once it stopped moving (less than 0.5% over a second), or at the deadline."""
        deadline = time.monotonic() + timeout
        last = self.rss()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.rss()
            if abs(now - last) < 0.005 * last:
                return now
            last = now
        return last

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


# --- users and credentials ------------------------------------------------------------------------


@dataclass
class Credentials:
    tokens: list[str]
    sessions: list[str]


def _credentials(count: int) -> Credentials:
    """``count`` users, each with a token and a signed-in session (kept between runs)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    names = [f"bench-conn-{i}" for i in range(count)]
    password = make_password("bench-connections")
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create([User(username=name, password=password) for name in names if name not in existing])
    users = list(User.objects.filter(username__in=names).order_by("id"))
    by_user = dict(Token.objects.filter(user__in=users).values_list("user_id", "key"))
    Token.objects.bulk_create(
        [Token(user=user, key=Token.generate_key()) for user in users if user.pk not in by_user], ignore_conflicts=True
    )
    by_user = dict(Token.objects.filter(user__in=users).values_list("user_id", "key"))
    # One fresh session per user and run (the session row is what a browser's cookie points at).
    store = SessionStore()
    expires = timezone.now() + timedelta(days=1)
    sessions = []
    rows = []
    for user in users:
        key = uuid.uuid4().hex
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
        rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
        sessions.append(key)
    Session.objects.bulk_create(rows, batch_size=1000)
    return Credentials(tokens=[by_user[user.pk] for user in users], sessions=sessions)


# --- one variant ----------------------------------------------------------------------------------


@dataclass
class Result:
    variant: str
    server: str
    sockets: int = 0
    rss_per_socket_kb: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    memory_failed: int = 0
    events_missing: int = 0  # of the events published to the idle sockets, deliveries that never arrived
    connects_per_s: dict[str, float] = field(default_factory=dict)
    connect_p50_ms: dict[str, float] = field(default_factory=dict)
    connect_p99_ms: dict[str, float] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    cpu_us_per_connect: dict[str, float] = field(default_factory=dict)
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # by kind


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _specs(
    variant: Variant, base: str, kind: str, creds: Credentials, users: range, cookie_name: str
) -> list[tuple[str, str | None]]:
    specs: list[tuple[str, str | None]] = []
    for i in users:
        if kind == "token":
            specs.append((f"{base}?token={creds.tokens[i]}", None))
        elif kind == "session":
            specs.append((base, f"{cookie_name}={creds.sessions[i]}"))
        else:
            specs.append((base, None))
    return specs


def _publish(variant: Variant, stream_id: int, slug: str, n: int) -> None:
    """One event to every subscriber: as the services do for Chorus, by ``group_send`` for the tutorial."""
    from realtime.protocol import event_frame

    if variant.hello:
        from django.db import transaction

        from realtime.services import stream_event_append

        with transaction.atomic():
            stream_event_append(stream_id=stream_id, event_type="bench.event", event_id=uuid.uuid4(), payload={"n": n})
    else:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        from bench.naive_group_send import naive_group
        from bench.naive_layer import naive_layer_install

        naive_layer_install()

        frame = event_frame(seq=n + 1, epoch=1, event_id=str(uuid.uuid4()), event_type="bench.event", payload={"n": n})
        async_to_sync(get_channel_layer().group_send)(naive_group(slug), {"type": "stream.event", "frame": frame})


def run_variant(
    args: argparse.Namespace, variant: Variant, stream_id: int, slug: str, creds: Credentials, ctx: dict[str, Any]
) -> Result:
    from django.conf import settings

    result = Result(variant=variant.name, server=variant.server)
    node = Node(variant).wait_ready()
    clients = Clients(args.client_processes)
    base = f"ws://127.0.0.1:{node.port}" + variant.path.format(slug=slug)
    cookie = settings.SESSION_COOKIE_NAME
    users = iter(range(len(creds.tokens)))

    def take(n: int) -> range:
        first = next(users)
        for _ in range(n - 1):
            next(users)
        return range(first, first + n)

    def open_kind(kind: str, n: int) -> dict[str, Any]:
        specs = _specs(variant, base, kind, creds, take(n), cookie)
        return clients.open(specs, concurrency=args.concurrency, want_hello=variant.hello, deflate=args.deflate)

    try:
        # Warm-up: imports, pools, the hub's subscription and the first of everything.
        for kind in KINDS:
            open_kind(kind, 30)
        clients.close_all()
        before = node.settled_rss()

        # Memory: N idle sockets, a third of each kind.
        third = args.sockets // 3
        opened = [open_kind(kind, n) for kind, n in zip(KINDS, (args.sockets - 2 * third, third, third), strict=True)]
        result.sockets = sum(o["ok"] for o in opened)
        result.memory_failed = sum(o["failed"] for o in opened)
        # Subscribed sockets get traffic: a few events, spaced as live comments are, reach every one.
        expected = clients.received() + result.sockets * args.events
        for n in range(args.events):
            _publish(variant, stream_id, slug, n)
            time.sleep(0.3)
        deadline = time.monotonic() + 60
        while clients.received() < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        result.events_missing = expected - clients.received()
        after = node.settled_rss()
        result.rss_before_mb, result.rss_after_mb = round(before / 2**20, 1), round(after / 2**20, 1)
        result.rss_per_socket_kb = round((after - before) / max(result.sockets, 1) / 1024, 2)
        clients.close_all()
        time.sleep(1.0)  # let the node see every close before the rate phases

        # Connect rate, per kind.
        for kind in KINDS:
            profiler = None
            out = ctx["profile_dir"] / f"connect-{variant.name}-{variant.server}-{kind}.txt"
            if args.profile:
                profiler = _py_spy(node.proc.pid, out)
                time.sleep(0.5)  # let py-spy attach
            cpu = node.cpu_seconds()
            phase = open_kind(kind, args.connects)
            cpu = node.cpu_seconds() - cpu
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
                profiler.wait(timeout=30)
                result.profile[kind] = _summarise_profile(out)
            result.connects_per_s[kind] = round(phase["ok"] / max(phase["seconds"], 1e-6), 1)
            result.connect_p50_ms[kind] = round(1000 * _percentile(phase["latencies"], 0.5), 1)
            result.connect_p99_ms[kind] = round(1000 * _percentile(phase["latencies"], 0.99), 1)
            result.failed[kind] = phase["failed"]
            result.cpu_us_per_connect[kind] = round(1e6 * cpu / max(phase["ok"], 1), 1)
            clients.close_all()
            time.sleep(1.0)
    finally:
        try:
            clients.quit()
        finally:
            node.stop()  # even if a client process died: never leave a node behind
    return result


# --- profiles -------------------------------------------------------------------------------------


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    # Blocking mode (the node pauses for each sample): without it, samples taken while the loop is in
    # uvloop's C code show whatever Python frame ran last, and idle time passes for work.
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", "250",
         "--threads"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# Where a connect's time goes: a sample counts for the first bucket any frame of its stack matches
# (innermost first), so the shares are of samples, each counted once.
PROFILE_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("logging/__init__.py",)),
    ("database (ORM, psycopg, pool)", ("django/db/", "psycopg", "django/contrib/sessions/", "authtoken/")),
    ("Redis client", ("redis/",)),
    ("thread hand-offs (asgiref, executor)", ("asgiref/", "concurrent/futures", "threading.py")),
    ("WebSocket protocol: handshake, framing, socket writes", ("websockets/", "autobahn/", "wsproto/")),
    ("server dispatch (uvicorn, daphne, Twisted)", ("uvicorn/", "daphne/", "twisted/", "httptools")),
    ("Channels routing, auth and consumer base", ("channels/", "django/urls/")),
    ("Chorus connect path", ("realtime/", "reactions/", "gateway/")),
    ("asyncio scheduling", ("asyncio/", "uvloop")),
]


IDLE_FRAMES = ("Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py", "wait (threading.py")


def _summarise_profile(path: Path) -> dict[str, float]:
    """Share of the node's busy samples per bucket (py-spy raw output: ``frames;... count``)."""
    totals = dict.fromkeys([name for name, _ in PROFILE_BUCKETS] + ["other"], 0)
    samples = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if any(idle in leaf for idle in IDLE_FRAMES):
            continue  # the loop or a worker thread waiting for work
        samples += int(count)
        matches = (
            name for frame in reversed(frames) for name, needles in PROFILE_BUCKETS if any(n in frame for n in needles)
        )
        name = next(matches, "other")
        totals[name] += int(count)
    return {name: round(100 * value / samples, 1) for name, value in totals.items() if value} if samples else {}


# --- the run --------------------------------------------------------------------------------------


def _baseline_tree(ref: str) -> Path | None:
    """The source tree at ``ref`` (git archive), to run the old connect path beside the new one."""
    dest = ROOT / "test-artifacts" / f"bench-baseline-{ref}"
    if (dest / "project" / "asgi.py").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"!! no baseline: cannot check out {ref} ({exc})", file=sys.stderr)
        return None
    return dest


def _prepare(users: int) -> tuple[int, str, Credentials]:
    import django

    subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_database.py")], check=True)
    django.setup()
    from django.core.management import call_command

    from realtime.services import stream_create

    call_command("migrate", verbosity=0)
    slug = f"bench-conn-{uuid.uuid4().hex[:6]}"
    stream = stream_create(slug=slug, title=slug)
    return stream.id, slug, _credentials(users)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run, uvicorn only, about a minute")
    parser.add_argument("--server", choices=["daphne", "uvicorn", "both"], default="both")
    parser.add_argument("--sockets", type=int, default=5000, help="idle sockets for the memory figure")
    parser.add_argument("--connects", type=int, default=2000, help="connects per kind for the rate figure")
    parser.add_argument("--events", type=int, default=5, help="events sent to the idle sockets before measuring")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight per client process")
    parser.add_argument("--baseline-ref", default="0cf021f", help="commit whose connect path is the baseline")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline ref")
    parser.add_argument("--no-tutorial", action="store_true", help="skip the Channels tutorial consumer")
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="handshakes without the permessage-deflate offer browsers make",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy each node during its connect phases")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sockets, args.connects = min(args.sockets, 1500), min(args.connects, 600)
        if args.server == "both":
            args.server = "uvicorn"

    servers = ["daphne", "uvicorn"] if args.server == "both" else [args.server]
    baseline = None if args.no_baseline else _baseline_tree(args.baseline_ref)
    variants: list[Variant] = []
    for server in servers:
        if not args.no_tutorial:
            tutorial = Variant("tutorial", server, ROOT, app="bench.naive_group_send:application",
                               path="/ws/naive/{slug}/", hello=False, token_auth=False)  # fmt: skip
            variants.append(tutorial)
        if baseline is not None:
            variants.append(Variant(args.baseline_ref, server, baseline))
        variants.append(Variant("chorus", server, ROOT))

    per_variant = args.sockets + 3 * args.connects + 3 * 30
    stream_id, slug, creds = _prepare(per_variant)
    ctx = {"profile_dir": ROOT / "test-artifacts" / "profiles"}
    ctx["profile_dir"].mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    for variant in variants:
        print(f"==> {variant.name} on {variant.server}: {args.sockets} idle sockets, {args.connects} connects per kind",
              flush=True)  # fmt: skip
        result = run_variant(args, variant, stream_id, slug, creds, ctx)
        results.append(result)
        rates = ", ".join(f"{kind} {result.connects_per_s[kind]:,.0f}/s" for kind in KINDS)
        print(
            f"    {result.rss_per_socket_kb} KB per idle socket ({result.sockets} sockets,"
            f" {result.rss_before_mb} -> {result.rss_after_mb} MB); connects: {rates};"
            f" failed {sum(result.failed.values()) + result.memory_failed}; events missing {result.events_missing}",
            flush=True,
        )

    print(
        "\nvariant            server    KB/socket   anon/s  token/s  session/s"
        "   x base (anon, token, session)   p99 ms (a/t/s)   CPU us/connect (a/t/s)"
    )
    for r in results:
        base = next((b for b in results if b.variant == args.baseline_ref and b.server == r.server), None)
        ratios = (
            ", ".join(f"{r.connects_per_s[k] / max(base.connects_per_s[k], 1e-6):.1f}x" for k in KINDS)
            if base is not None
            else "-"
        )
        print(
            f"{r.variant:<18} {r.server:<8} {r.rss_per_socket_kb:>9}  "
            + "  ".join(f"{r.connects_per_s[k]:>7,.0f}" for k in KINDS)
            + f"   {ratios:<30}   "
            + "/".join(f"{r.connect_p99_ms[k]:g}" for k in KINDS)
            + "   "
            + "/".join(f"{r.cpu_us_per_connect[k]:g}" for k in KINDS)
        )
    for r in results:
        base = next((b for b in results if b.variant == args.baseline_ref and b.server == r.server), None)
        if base is not None and r is not base and r.rss_per_socket_kb > 0:
            ratio = base.rss_per_socket_kb / r.rss_per_socket_kb
            print(f"{r.variant} on {r.server}: {ratio:.1f}x less memory per idle socket than {base.variant}")
    for r in results:
        for kind, profile in r.profile.items():
            print(f"\nprofile of {r.variant} on {r.server} during {kind} connects (share of busy samples):")
            for name, share in sorted(profile.items(), key=lambda item: -item[1]):
                print(f"  {share:5.1f}%  {name}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    failed = sum(sum(r.failed.values()) + r.memory_failed + r.events_missing for r in results if r.variant == "chorus")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
