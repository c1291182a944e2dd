"""The write benchmark's posters: open-loop HTTP/1.1 keep-alive clients in separate processes.

This is measuring equipment, cheap enough to offer 1,000 POST/s on a 2-core machine beside the
server it measures (httpx costs several hundred microseconds per request; this about 50-100):

- each process runs one uvloop loop; a connection is an ``asyncio.Protocol`` with a minimal
  HTTP/1.1 response parser (status line, headers, ``Content-Length`` or chunked body);
- the load is open-loop: every request has a scheduled time and is sent then, whatever earlier
  requests are doing. Like a browser, a user keeps at most ``max_connections_per_user``
  keep-alive connections per node; a request with none free waits for one, and the wait is
  reported (``sent - scheduled``), never hidden;
- a request that finds its reused keep-alive connection closed by the server before any byte of
  an answer (an idle timeout racing the send) is sent once more on a new connection with the same
  ``Idempotency-Key``, as a browser does, and counted;
- each comment's body carries ``@t=<wall time of the send>``, which the subscribers
  (``bench.load_client``) turn into POST-to-receipt latency, and a tag naming the request.

The parent (``PosterPool``) gives each process its users and its share of the schedule, and gets
back one ``Outcome`` per request and the CPU time the process used.

The same connection and parser also serve simpler runs of ready-made requests, in the caller's
loop, reported as a ``Tally`` (each status, the ``Retry-After`` and JSON shape of 503s, every
request that got no answer by kind, latencies); the edge overload tests and ``bench/accept.py``
use them:

- ``rate_run``: requests scheduled at a fixed rate (open loop: latency counts from the scheduled
  time), over keep-alive connections opened as needed up to ``connections``;
- ``burst_run``: ``count`` requests sent at once, each on its own new connection;
- ``serial_run``: one request after another on one keep-alive connection.
"""

import asyncio
import collections
import contextlib
import json
import multiprocessing.connection
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bench.load_client import ClientProcesses


@dataclass
class User:
    """A client identity: ``headers`` are its pre-rendered authentication header lines."""

    name: str
    kind: str  # "session" (cookie + CSRF token, as a browser) or "token" (Authorization: Token)
    node: int  # index of the node this user's browser or app talks to
    headers: bytes


@dataclass
class Outcome:
    """What happened to one POST. Times are wall-clock seconds (``time.time()``)."""

    tag: str
    kind: str
    node: int
    scheduled: float
    sent: float = 0.0  # 0: never sent (no connection could be had)
    answered: float = 0.0  # 0: no answer
    status: int = 0  # 0: no HTTP answer (see ``error``)
    error: str = ""  # "connect", "reset", "timeout", "unsent" or ""
    retry_after: bool = False
    comment_id: str = ""
    resent: bool = False  # sent again after a keep-alive race (same Idempotency-Key)


@dataclass
class Plan:
    """One process's share of a phase."""

    users: list[User]
    nodes: list[tuple[str, int]]
    path: str
    schedule: list[tuple[float, int, str]]  # (offset from start, index into users, tag)
    start_at: float  # wall-clock time of offset 0
    timeout: float = 30.0
    max_connections_per_user: int = 6
    prewarm: int = 0  # connections per user to open before the start (a burst)
    deadline: float = 0.0  # wall-clock time after which queued requests are given up ("unsent")


@dataclass
class PlanReport:
    outcomes: list[Outcome] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    connections_opened: int = 0


class ConnectionClosed(Exception):
    def __init__(self, answered_bytes: int, *, reset: bool = False) -> None:
        super().__init__(f"connection {'reset' if reset else 'closed'} after {answered_bytes} bytes of an answer")
        self.answered_bytes = answered_bytes
        self.reset = reset  # by a TCP reset rather than an orderly close


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.requests = 0
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.need: int | None = None  # body bytes still expected (Content-Length)
        self.chunked = False
        self.until_close = False
        self.in_head = True
        self.answered_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's: a full Transport

    def request(self, data: bytes) -> "asyncio.Future[Response]":
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        if self.closed:  # the server closed it while it was idle
            self.waiter.set_exception(ConnectionClosed(0))
            return self.waiter
        self.requests += 1
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.answered_bytes += len(data)
        self.buffer += data
        while self._parse():
            pass

    def _parse(self) -> bool:
        """Consume what the buffer holds; True when a response completed and more may follow."""
        if self.in_head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            del self.buffer[: end + 4]
            self.status = int(lines[0].split(b" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                self.headers[name.strip().lower()] = value.strip()
            self.in_head = False
            if self.status in (204, 304) or 100 <= self.status < 200:
                self.need = 0
            elif b"content-length" in self.headers:
                self.need = int(self.headers[b"content-length"])
            elif self.headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                self.chunked = True
            else:
                self.until_close = True
        if self.until_close:
            self.body += self.buffer
            self.buffer.clear()
            return False
        if self.chunked:
            while True:
                line_end = self.buffer.find(b"\r\n")
                if line_end < 0:
                    return False
                size = int(bytes(self.buffer[:line_end]).split(b";")[0], 16)
                if size == 0:
                    # The last chunk, then optional trailers, then an empty line.
                    trailer_end = self.buffer.find(b"\r\n\r\n", line_end)
                    if trailer_end < 0:
                        if self.buffer[line_end : line_end + 4] != b"\r\n\r\n":
                            return False
                        trailer_end = line_end
                    del self.buffer[: trailer_end + 4]
                    return self._complete()
                if len(self.buffer) < line_end + 2 + size + 2:
                    return False
                self.body += self.buffer[line_end + 2 : line_end + 2 + size]
                del self.buffer[: line_end + 2 + size + 2]
        assert self.need is not None
        if len(self.buffer) < self.need:
            return False
        self.body += self.buffer[: self.need]
        del self.buffer[: self.need]
        return self._complete()

    def _complete(self) -> bool:
        response = Response(self.status, self.headers, bytes(self.body))
        waiter = self.waiter
        self.waiter = None
        if self.headers.get(b"connection", b"").lower() == b"close":
            self.close()
        self._reset_response()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        return bool(self.buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.until_close and not self.in_head:
                self.waiter.set_result(Response(self.status, self.headers, bytes(self.body + self.buffer)))
            else:
                self.waiter.set_exception(ConnectionClosed(self.answered_bytes, reset=exc is not None))
        self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _UserConnections:
    """A user's keep-alive connections to one node, at most ``limit`` of them (as a browser)."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[HttpConnection] = []
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[HttpConnection | None]] = collections.deque()
        self.opened_total = 0

    async def _connect(self, timeout: float) -> HttpConnection:
        loop = asyncio.get_running_loop()
        self.open += 1
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(HttpConnection, self.host, self.port), timeout)
        except TimeoutError as exc:  # a full accept queue drops SYNs: the client retries them, then gives up
            self.open -= 1
            self._wake()
            raise ConnectionError(f"no connection within {timeout} s") from exc
        except BaseException:
            self.open -= 1
            self._wake()  # a waiter may now open a connection of its own
            raise
        self.opened_total += 1
        return conn

    async def acquire(self, *, connect_timeout: float, wait_until: float, fresh: bool = False) -> HttpConnection:
        """An idle connection, a new one, or the next one released; ``fresh`` forces a new one.

        Raises ``OSError`` when a connection cannot be made, ``TimeoutError`` when none was free
        by ``wait_until`` (wall-clock time).
        """
        while not fresh and self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.open -= 1
        if self.open < self.limit or fresh:
            return await self._connect(connect_timeout)
        waiter: asyncio.Future[HttpConnection | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        released = await asyncio.wait_for(waiter, max(0.001, wait_until - time.time()))
        if released is not None:
            return released
        return await self.acquire(connect_timeout=connect_timeout, wait_until=wait_until)

    def release(self, conn: HttpConnection) -> None:
        if conn.closed:
            self.open -= 1
            self._wake()
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def _wake(self) -> None:
        """A connection slot freed up: let the first waiter open a connection."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def _request_bytes(user: User, host: str, port: int, path: str, tag: str) -> bytes:
    body = json.dumps({"body": f"{tag} @t={time.time():.6f}"}, separators=(",", ":")).encode()
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nIdempotency-Key: {uuid.uuid4().hex}\r\n"
        ).encode()
        + user.headers
        + b"\r\n"
        + body
    )


class _Runner:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.pools = [_UserConnections(*plan.nodes[user.node], plan.max_connections_per_user) for user in plan.users]
        self.outcomes: list[Outcome] = []

    async def prewarm(self) -> None:
        """Open ``plan.prewarm`` connections per user now, so a burst starts on warm connections."""
        wanted = [pool for pool in self.pools for _ in range(min(self.plan.prewarm, pool.limit))]
        wait_until = time.time() + self.plan.timeout
        opened = await asyncio.gather(
            *(pool.acquire(connect_timeout=self.plan.timeout, wait_until=wait_until) for pool in wanted),
            return_exceptions=True,
        )
        for pool, conn in zip(wanted, opened, strict=True):
            if isinstance(conn, HttpConnection):
                pool.release(conn)

    async def post(self, user_index: int, tag: str, scheduled: float) -> None:
        plan, user, pool = self.plan, self.plan.users[user_index], self.pools[user_index]
        host, port = plan.nodes[user.node]
        outcome = Outcome(tag=tag, kind=user.kind, node=user.node, scheduled=scheduled)
        self.outcomes.append(outcome)
        data = None
        for attempt in range(2):
            try:
                wait_until = plan.deadline or time.time() + plan.timeout
                conn = await pool.acquire(connect_timeout=plan.timeout, wait_until=wait_until, fresh=attempt > 0)
            except TimeoutError:
                outcome.error = "unsent"
                return
            except OSError:
                outcome.error = "connect"
                return
            reused = conn.requests > 0
            if data is None:
                outcome.sent = time.time()
                data = _request_bytes(user, host, port, plan.path, tag)
            try:
                response = await asyncio.wait_for(conn.request(data), timeout=plan.timeout)
            except TimeoutError:
                conn.close()
                pool.release(conn)
                outcome.error = "timeout"
                return
            except ConnectionClosed as exc:
                pool.release(conn)
                if reused and exc.answered_bytes == 0 and attempt == 0:
                    outcome.resent = True
                    continue
                outcome.error = "reset"
                return
            pool.release(conn)
            outcome.answered = time.time()
            outcome.status = response.status
            outcome.retry_after = b"retry-after" in response.headers
            if response.status == 202:
                with contextlib.suppress(ValueError, AttributeError):
                    outcome.comment_id = str(json.loads(response.body).get("id", ""))
            return

    async def run(self) -> PlanReport:
        plan = self.plan
        await self.prewarm()
        cpu_before = _cpu_seconds()
        wall_before = time.time()
        tasks = []
        for offset, user_index, tag in plan.schedule:
            at = plan.start_at + offset
            delay = at - time.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self.post(user_index, tag, at)))
        if tasks:
            await asyncio.gather(*tasks)
        report = PlanReport(
            outcomes=self.outcomes,
            cpu_seconds=_cpu_seconds() - cpu_before,
            wall_seconds=time.time() - wall_before,
            connections_opened=sum(pool.opened_total for pool in self.pools),
        )
        for pool in self.pools:
            pool.close()
        return report


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command, argument = await loop.run_in_executor(None, conn.recv)
        if command == "run":
            conn.send(await _Runner(argument).run())
        elif command == "close":
            conn.send(None)
            return


def _process_main(conn: multiprocessing.connection.Connection) -> None:
    import uvloop

    uvloop.run(_serve(conn))


class PosterPool:
    """Poster processes; ``run`` splits the users (and so the schedule) between them."""

    def __init__(self, processes: int = 2) -> None:
        self.children = ClientProcesses(_process_main, processes)

    async def run(
        self,
        *,
        users: list[User],
        nodes: list[tuple[str, int]],
        path: str,
        schedule: list[tuple[float, int, str]],
        start_in: float = 1.0,
        **options: Any,
    ) -> list[PlanReport]:
        """Post ``schedule`` (offset, user index, tag) from ``start_in`` seconds from now."""
        count = len(self.children.pipes)
        start_at = time.time() + start_in
        plans = []
        for process in range(count):
            mine = list(range(process, len(users), count))
            local = {user_index: i for i, user_index in enumerate(mine)}
            plans.append(
                Plan(
                    users=[users[i] for i in mine],
                    nodes=nodes,
                    path=path,
                    schedule=[(offset, local[u], tag) for offset, u, tag in schedule if u in local],
                    start_at=start_at,
                    **options,
                )
            )
        return await self.children.ask("run", per_process=plans)

    def close(self) -> None:
        for pipe in self.children.pipes:
            with contextlib.suppress(OSError, EOFError):
                pipe.send(("close", None))
                pipe.recv()
        self.children.join()


# --- runs of ready-made requests, in the caller's loop -------------------------------------------

CONNECT_TIMEOUT = 5.0  # a client gives up on a connect after a few seconds (httpx: 5 s)


@dataclass
class Tally:
    """What the client saw over a run: statuses, failures by kind, latencies (seconds) of answers."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    bad_refusals: list[str] = field(default_factory=list)  # 503s without Retry-After or JSON code
    elapsed: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.failures.values())

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(self.statuses.items()))
        failures = " ".join(f"{kind}:{n}" for kind, n in sorted(self.failures.items())) or "none"
        return (
            f"sent {self.sent} in {self.elapsed:.1f}s; statuses {statuses}; no answer {failures}; "
            f"p50 {1000 * self.percentile(0.5):.1f} ms p99 {1000 * self.percentile(0.99):.1f} ms"
        )

    def record(self, response: Response, latency: float) -> None:
        self.statuses[response.status] += 1
        self.latencies.append(latency)
        if response.status == 503:
            try:
                code = json.loads(response.body).get("code")
            except (ValueError, AttributeError):
                code = None
            if b"retry-after" not in response.headers or not code:
                retry_after = response.headers.get(b"retry-after")
                self.bad_refusals.append(f"503 retry-after={retry_after!r} body={response.body[:80]!r}")


class _ConnectTimeout(OSError):
    """The server did not accept the connection in time (its listen backlog overflowed)."""


async def _connect(host: str, port: int) -> HttpConnection:
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(loop.create_connection(HttpConnection, host, port), CONNECT_TIMEOUT)
    except TimeoutError:
        raise _ConnectTimeout from None
    return conn


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, _ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or (isinstance(exc, ConnectionClosed) and exc.reset):
        return "reset"
    if isinstance(exc, ConnectionClosed):
        return "closed_without_answer"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


OnAnswer = Callable[[int, Response], None]


async def _exchange(
    conn: HttpConnection | None,
    host: str,
    port: int,
    i: int,
    raw: bytes,
    tally: Tally,
    *,
    since: float,
    timeout: float,
    on_answer: OnAnswer | None = None,
) -> HttpConnection | None:
    """One request (on ``conn``, or a new connection if it is gone), recorded in ``tally`` with its
    latency counted from ``since``; the connection to reuse, or None."""
    try:
        if conn is None or conn.closed:
            conn = await _connect(host, port)
        response = await asyncio.wait_for(conn.request(raw), timeout)
    except (OSError, ConnectionClosed, TimeoutError, ValueError) as exc:
        tally.failures[_failure_kind(exc)] += 1
        if conn is not None:
            conn.close()
        return None
    tally.record(response, time.perf_counter() - since)
    if on_answer is not None:
        on_answer(i, response)
    return None if conn.closed else conn


async def rate_run(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    rate: float,
    count: int,
    connections: int = 64,
    timeout: float = 30.0,
    on_answer: OnAnswer | None = None,
    stop: asyncio.Event | None = None,
) -> Tally:
    """``count`` requests at ``rate`` per second (fewer if ``stop`` is set first: none is scheduled
    after it); a request waits for a free connection if all are busy."""
    tally = Tally()
    idle: asyncio.Queue[HttpConnection | None] = asyncio.Queue()
    opened = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened
        if idle.empty() and opened < connections:
            opened += 1
            conn = None
        else:
            conn = await idle.get()
        conn = await _exchange(conn, host, port, i, make_request(i), tally, since=scheduled, timeout=timeout,
                               on_answer=on_answer)  # fmt: skip
        idle.put_nowait(conn)

    started = time.perf_counter()
    tasks = []
    for i in range(count):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop is not None and stop.is_set():
            break
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    tally.elapsed = time.perf_counter() - started
    while not idle.empty():
        conn = idle.get_nowait()
        if conn is not None:
            conn.close()
    return tally


async def burst_run(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    count: int,
    timeout: float = 60.0,
    on_answer: OnAnswer | None = None,
) -> Tally:
    """``count`` requests at once, each on a new connection (a crowd arriving together)."""
    tally = Tally()

    async def one(i: int) -> None:
        conn = await _exchange(None, host, port, i, make_request(i), tally, since=time.perf_counter(),
                               timeout=timeout, on_answer=on_answer)  # fmt: skip
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    tally.elapsed = time.perf_counter() - started
    return tally


async def serial_run(
    host: str, port: int, make_request: Callable[[int], bytes], *, count: int, timeout: float = 30.0
) -> Tally:
    """``count`` requests one after another on one keep-alive connection (closed loop: no queueing)."""
    tally = Tally()
    conn = None
    started = time.perf_counter()
    for i in range(count):
        conn = await _exchange(conn, host, port, i, make_request(i), tally, since=time.perf_counter(), timeout=timeout)
    tally.elapsed = time.perf_counter() - started
    if conn is not None:
        conn.close()
    return tally


def post_request(
    *, host: str, port: int, path: str, body: bytes, headers: dict[str, str], keep_alive: bool = True
) -> bytes:
    """The bytes of one ``POST`` (HTTP/1.1)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
