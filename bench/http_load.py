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
"""

import asyncio
import collections
import contextlib
import json
import multiprocessing.connection
import resource
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

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
    def __init__(self, answered_bytes: int) -> None:
        super().__init__(f"connection closed after {answered_bytes} bytes of an answer")
        self.answered_bytes = answered_bytes


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[_Response] | None = None
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
        self.transport = transport  # type: ignore[assignment]

    def request(self, data: bytes) -> "asyncio.Future[_Response]":
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
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
        response = _Response(self.status, self.headers, bytes(self.body))
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
                self.waiter.set_result(_Response(self.status, self.headers, bytes(self.body + self.buffer)))
            else:
                self.waiter.set_exception(ConnectionClosed(self.answered_bytes))
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
        conn = await asyncio.wait_for(waiter, max(0.001, wait_until - time.time()))
        return conn if conn is not None else await self.acquire(connect_timeout=connect_timeout, wait_until=wait_until)

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
