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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        self.transport = transport  # type: ignore[assignment]
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self._frame(event.data, now)
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
        return sum(await self.children.ask("open", per_process=shares))  # type: ignore[arg-type]

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
