"""An outside HTTP/1.1 load client for the write path: open-loop rates, bursts, every failure counted.

Used by the edge overload tests and ``bench/accept.py``. It is measuring equipment, so it is small
and cheap per request: raw asyncio streams (on uvloop when the caller runs one), one request in
flight per connection, responses parsed by hand (``Content-Length`` or chunked).
It reports what a client sees: each status code, the ``Retry-After`` and JSON shape of refusals,
and every request that never got an answer (connection refused, reset, timed out), by kind.

- ``rate_run``: requests scheduled at a fixed rate (open loop: a slow server does not slow the
  schedule; latency counts from the scheduled time), over a pool of keep-alive connections that
  grows up to ``connections`` when every connection is busy.
- ``burst_run``: ``count`` requests sent at once, each on its own new connection.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

CONNECT_TIMEOUT = 5.0


class ConnectTimeout(OSError):
    """The server did not accept the connection in time (its listen backlog overflowed)."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    """What the client saw, for a run: statuses, failures by kind, latencies (seconds) of answers."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
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


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        # A client gives up on a connect after a few seconds (httpx: 5 s); so does this one.
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
            )
        except TimeoutError:
            raise ConnectTimeout from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> Answer:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, headers, body)


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed_without_answer"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def _record(outcome: Outcome, answer: Answer, latency: float) -> None:
    outcome.statuses[answer.status] += 1
    outcome.latencies.append(latency)
    if answer.status == 503:
        try:
            code = json.loads(answer.body).get("code")
        except ValueError:
            code = None
        if "retry-after" not in answer.headers or not code:
            retry_after = answer.headers.get("retry-after")
            outcome.bad_refusals.append(f"503 retry-after={retry_after} body={answer.body[:80]!r}")


async def _exchange(
    conn: Connection,
    i: int,
    raw: bytes,
    outcome: Outcome,
    *,
    since: float,
    timeout: float,
    on_answer: Callable[[int, Answer], None] | None = None,
) -> None:
    """One request on ``conn``, recorded in ``outcome`` (latency counted from ``since``)."""
    try:
        answer = await asyncio.wait_for(conn.request(raw), timeout)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        outcome.failures[_failure_kind(exc)] += 1
        conn.close()
    else:
        _record(outcome, answer, time.perf_counter() - since)
        if on_answer is not None:
            on_answer(i, answer)


async def rate_run(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    rate: float,
    count: int,
    connections: int = 64,
    timeout: float = 30.0,
    on_answer: Callable[[int, Answer], None] | None = None,
) -> Outcome:
    """``count`` requests at ``rate`` per second; a request waits for a free connection if all are busy."""
    outcome = Outcome()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened
        if idle.empty() and opened < connections:
            opened += 1
            conn = Connection(host, port)
        else:
            conn = await idle.get()
        await _exchange(conn, i, make_request(i), outcome, since=scheduled, timeout=timeout, on_answer=on_answer)
        idle.put_nowait(conn)

    started = time.perf_counter()
    tasks = []
    for i in range(count):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    outcome.elapsed = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait().close()
    return outcome


async def burst_run(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    count: int,
    timeout: float = 60.0,
    on_answer: Callable[[int, Answer], None] | None = None,
) -> Outcome:
    """``count`` requests at once, each on a new connection (a crowd arriving together)."""
    outcome = Outcome()

    async def one(i: int) -> None:
        conn = Connection(host, port)
        try:
            await _exchange(conn, i, make_request(i), outcome, since=time.perf_counter(), timeout=timeout,
                            on_answer=on_answer)  # fmt: skip
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    outcome.elapsed = time.perf_counter() - started
    return outcome


async def serial_run(
    host: str, port: int, make_request: Callable[[int], bytes], *, count: int, timeout: float = 30.0
) -> Outcome:
    """``count`` requests one after another on one keep-alive connection (closed loop: no queueing)."""
    outcome = Outcome()
    conn = Connection(host, port)
    started = time.perf_counter()
    for i in range(count):
        await _exchange(conn, i, make_request(i), outcome, since=time.perf_counter(), timeout=timeout)
    outcome.elapsed = time.perf_counter() - started
    conn.close()
    return outcome


def post_request(
    *, host: str, port: int, path: str, body: bytes, headers: dict[str, str], keep_alive: bool = True
) -> bytes:
    """The bytes of one ``POST`` (HTTP/1.1)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
