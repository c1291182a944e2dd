"""The fan-out benchmark's subscribers: many WebSocket connections per process, read cheaply.

This is measuring equipment. A client that needs 30 us to take a frame off one of 1,000 sockets
adds up to 30 ms of its own queueing to the latency it reports for each event, so:

- the sockets are spread over several processes (``LoadClient(processes=...)``), each with its own
  uvloop loop;
- a socket is an ``asyncio.Protocol`` driving the websockets library's sans-I/O client: a frame
  costs one parse and a byte search for its sequence number and timestamp, with no task switch.

The parent drives its processes over pipes: open the sockets, count what arrived, reset between
phases, collect every socket's sequence numbers and latencies, close.
"""

import asyncio
import functools
import multiprocessing
import multiprocessing.connection
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.typing import Origin
from websockets.uri import parse_uri

ORIGIN = Origin("http://127.0.0.1")  # a browser's Origin: the tutorial's origin validator wants one


@dataclass
class SocketReport:
    """What one socket received in the current phase."""

    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, for frames carrying "@t=<time>"
    last_at: float = 0.0


def _number_after(data: bytes, key: bytes) -> bytes | None:
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = start
    while end < len(data) and (48 <= data[end] <= 57 or data[end] == 46):  # digits and "."
        end += 1
    return data[start:end]


class _Socket(asyncio.Protocol):
    def __init__(self, url: str, handshake: asyncio.Future[bool]) -> None:
        self.protocol = ClientProtocol(parse_uri(url), origin=ORIGIN, max_size=None)
        self.handshake = handshake
        self.transport: asyncio.Transport | None = None
        self.report = SocketReport()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's: a full Transport
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    # bytes from the parser (typed as any bytes-like): bytes() gives back the same object
                    self._frame(bytes(event.data), now)
            elif not self.handshake.done():  # the handshake's response
                self.handshake.set_result(self.protocol.handshake_exc is None)
        self._flush()

    def _frame(self, data: bytes, now: float) -> None:
        seq = _number_after(data, b'"seq":')
        if not seq:
            return
        self.report.seqs.append(int(seq))
        self.report.last_at = now
        self.received += 1
        stamp = _number_after(data, b"@t=")
        if stamp:
            self.report.latencies.append(now - float(stamp))

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_result(False)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.protocol.send_close()
            self._flush()
            self.transport.close()


async def _open(url: str) -> tuple[_Socket | None, int]:
    """One subscribed socket, retrying refused handshakes; also returns how many were refused."""
    loop = asyncio.get_running_loop()
    uri = parse_uri(url)
    for refused in range(20):
        handshake: asyncio.Future[bool] = loop.create_future()
        _, sock = await loop.create_connection(functools.partial(_Socket, url, handshake), uri.host, uri.port)
        if await asyncio.wait_for(handshake, timeout=120):
            return sock, refused
        # Refused: the baseline's Redis pool overflows under a storm of group_add (HTTP 500).
        sock.close()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} kept refusing connections")


async def _serve(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    sockets: list[_Socket] = []
    while True:
        command, argument = await loop.run_in_executor(None, conn.recv)
        if command == "open":
            refused = 0
            for start in range(0, len(argument), 50):  # in waves, as a crowd arrives
                opened = await asyncio.gather(*(_open(url) for url in argument[start : start + 50]))
                sockets += [sock for sock, _ in opened if sock is not None]
                refused += sum(count for _, count in opened)
            conn.send(refused)
        elif command == "received":
            conn.send(sum(sock.received for sock in sockets))
        elif command == "reset":
            for sock in sockets:
                sock.report, sock.received = SocketReport(), 0
            conn.send(None)
        elif command == "collect":
            conn.send([sock.report for sock in sockets])
        elif command == "close":
            for sock in sockets:
                sock.close()
            await asyncio.sleep(0.2)
            conn.send(None)
            return


def _process_main(conn: multiprocessing.connection.Connection) -> None:
    import uvloop

    uvloop.run(_serve(conn))


class ClientProcesses:
    """Child processes, each running ``main(pipe)`` (spawned, so nothing of the parent's state
    leaks in), driven by the parent over pipes with (command, argument) requests."""

    def __init__(self, main: Callable[[multiprocessing.connection.Connection], None], count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[Any] = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    async def ask(self, command: str, argument: object = None, per_process: list[Any] | None = None) -> list[Any]:
        """Send every process the command (with its own argument from ``per_process``); their answers."""

        def ask(pipe: multiprocessing.connection.Connection, arg: object) -> Any:
            pipe.send((command, arg))
            return pipe.recv()

        arguments = per_process or [argument] * len(self.pipes)
        return await asyncio.gather(*(asyncio.to_thread(ask, p, a) for p, a in zip(self.pipes, arguments, strict=True)))

    def join(self) -> None:
        """Wait for the processes to end (after a command that ends them), killing stragglers."""
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


class LoadClient:
    """Subscribers spread over ``processes`` child processes; every call is awaited by the parent."""

    def __init__(self, processes: int = 2) -> None:
        self.children = ClientProcesses(_process_main, processes)

    async def open(self, urls: list[str]) -> int:
        """Open every socket (process i takes urls i, i+P, ...); returns how many handshakes were refused."""
        count = len(self.children.pipes)
        shares = [urls[i::count] for i in range(count)]
        return sum(await self.children.ask("open", per_process=shares))

    async def received(self) -> int:
        return sum(await self.children.ask("received"))

    async def reset(self) -> None:
        await self.children.ask("reset")

    async def collect(self) -> list[SocketReport]:
        return [report for reports in await self.children.ask("collect") for report in reports]

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.children.ask("close"), timeout=30)
        finally:
            self.children.join()


# --- subscribers that survive a rolling restart ----------------------------------------------------


@dataclass
class ResumingReport:
    """What one resuming subscriber saw over a run: every event, and every hand-over and drop."""

    stream: str
    seqs: list[int] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # the "@t=" send time of each event that has one
    received: list[float] = field(default_factory=list)  # ... and when it arrived
    handovers: list[float] = field(default_factory=list)  # seconds from a draining frame to the next hello
    drops: list[float] = field(default_factory=list)  # seconds from an unannounced close to the next hello
    refused: int = 0  # connects or handshakes that failed and were tried again
    refused_draining: int = 0  # sockets a draining node refused (the balancer had not yet seen it drain)
    failures: dict[str, int] = field(default_factory=dict)  # why connects failed: "connect" or the HTTP status
    error_frames: int = 0
    last: int = 0  # the resume point: the highest seq received


class _Resuming:
    """One subscriber of a stream through a balancer: reconnects after every close, resuming with
    ``?after=`` its last event, as docs/API.md asks of a client. A close after a ``draining`` frame
    (4503, a hand-over) is followed at once, after a random share of ``HANDOVER_JITTER`` as the
    project's clients do; any other close is followed after a full-jitter backoff, counted as a drop."""

    HANDOVER_JITTER = 0.5  # the Python client's shortest backoff: its hand-over delay is a share of it
    BACKOFF = (0.5, 5.0)

    def __init__(self, base_url: str, stream: str) -> None:
        self.base_url = base_url  # ws://host:port/ws/streams/<slug>/
        self.report = ResumingReport(stream=stream)
        self.live: asyncio.Future[bool] = asyncio.get_running_loop().create_future()  # first hello
        self.down_at: float | None = None  # when the socket went away (or was told it would)
        self.draining = False
        self.attempt = 0
        self.closing = False
        self.connection: _ResumingConnection | None = None
        self.connecting: asyncio.Task[None] | None = None

    def connect(self) -> None:
        if not self.closing:
            self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        url = f"{self.base_url}?after={self.report.last}"
        uri = parse_uri(url)
        try:
            _, self.connection = await asyncio.wait_for(
                loop.create_connection(functools.partial(_ResumingConnection, self, url), uri.host, uri.port), 10
            )
        except (OSError, TimeoutError):
            self.failed("connect")

    def failed(self, why: str) -> None:
        self.report.refused += 1
        self.report.failures[why] = self.report.failures.get(why, 0) + 1
        self._retry()

    def _retry(self) -> None:
        low, high = self.BACKOFF
        delay = min(high, low + random.random() * low * 2**self.attempt)
        self.attempt += 1
        asyncio.get_running_loop().call_later(delay, self.connect)

    def frame(self, data: bytes, now: float) -> None:
        seq = _number_after(data, b'"seq":')
        if seq:
            number = int(seq)
            self.report.seqs.append(number)
            self.report.last = max(self.report.last, number)
            stamp = _number_after(data, b"@t=")
            if stamp:
                self.report.sent.append(float(stamp))
                self.report.received.append(now)
        elif b'"type":"hello"' in data or b'"type": "hello"' in data:
            self.attempt = 0
            if self.down_at is not None:
                (self.report.handovers if self.draining else self.report.drops).append(now - self.down_at)
                self.down_at, self.draining = None, False
            if not self.live.done():
                self.live.set_result(True)
        elif b'"type":"draining"' in data:
            if b'"last_seq"' in data:
                self.down_at, self.draining = now, True
            else:
                self.report.refused_draining += 1
        elif b'"type":"error"' in data or b'"type": "error"' in data:
            self.report.error_frames += 1

    def closed(self, code: int | None, handshake_failure: str | None) -> None:
        self.connection = None
        if self.closing:
            return
        if handshake_failure is not None:  # refused by the balancer or a node
            self.failed(handshake_failure)
            return
        if self.down_at is None:
            self.down_at, self.draining = time.time(), False
        if code == 4503 and self.draining:
            asyncio.get_running_loop().call_later(self.HANDOVER_JITTER * random.random(), self.connect)
        else:
            self._retry()

    def close(self) -> None:
        self.closing = True
        if self.connection is not None:
            self.connection.close()


class _ResumingConnection(_Socket):
    """One socket of a ``_Resuming`` subscriber."""

    def __init__(self, owner: _Resuming, url: str) -> None:
        super().__init__(url, asyncio.get_running_loop().create_future())
        self.owner = owner

    def _frame(self, data: bytes, now: float) -> None:
        self.owner.frame(data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        failure = None
        if not self.handshake.done() or not self.handshake.result():
            response = getattr(self.protocol.handshake_exc, "response", None)
            failure = str(response.status_code) if response is not None else "no answer"
        super().connection_lost(exc)
        self.owner.closed(self.protocol.close_code, failure)


async def _serve_resuming(conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    subscribers: list[_Resuming] = []
    while True:
        command, argument = await loop.run_in_executor(None, conn.recv)
        if command == "open":  # [(base url, stream)]: connect in waves, as a crowd arrives
            for start in range(0, len(argument), 50):
                wave = [_Resuming(url, stream) for url, stream in argument[start : start + 50]]
                for subscriber in wave:
                    subscriber.connect()
                await asyncio.wait_for(asyncio.gather(*(s.live for s in wave)), timeout=120)
                subscribers += wave
            conn.send(sum(s.report.refused for s in subscribers))
        elif command == "received":
            conn.send(sum(len(s.report.seqs) for s in subscribers))
        elif command == "behind":  # {stream: head}: how many subscribers have not reached it yet
            conn.send(sum(1 for s in subscribers if s.report.last < argument.get(s.report.stream, 0)))
        elif command == "collect":
            conn.send([s.report for s in subscribers])
        elif command == "close":
            for subscriber in subscribers:
                subscriber.close()
            await asyncio.sleep(0.2)
            conn.send(None)
            return


def _resuming_main(conn: multiprocessing.connection.Connection) -> None:
    import uvloop

    uvloop.run(_serve_resuming(conn))


class ResumingLoadClient:
    """Subscribers that reconnect and resume (``_Resuming``), spread over ``processes`` processes."""

    def __init__(self, processes: int = 2) -> None:
        self.children = ClientProcesses(_resuming_main, processes)

    async def open(self, subscribers: list[tuple[str, str]]) -> int:
        """Open every (socket base URL, stream) and wait for its hello; returns how many tries failed."""
        count = len(self.children.pipes)
        return sum(await self.children.ask("open", per_process=[subscribers[i::count] for i in range(count)]))

    async def received(self) -> int:
        return sum(await self.children.ask("received"))

    async def behind(self, heads: dict[str, int]) -> int:
        return sum(await self.children.ask("behind", heads))

    async def collect(self) -> list[ResumingReport]:
        return [report for reports in await self.children.ask("collect") for report in reports]

    def pids(self) -> list[int]:
        return [process.pid for process in self.children.processes]

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.children.ask("close"), timeout=30)
        finally:
            self.children.join()
