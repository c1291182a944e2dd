"""A TCP forwarder that a test can cut and restore: a network outage of a shared service.

Used where killing the real service would disturb other users of the machine (the system
RabbitMQ): clients connect to the proxy's port; ``cut()`` drops every connection and refuses new
ones, ``restore()`` listens again on the same port. ``BlackHole`` is a service that hangs instead:
it takes connections and requests and never answers.
"""

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from tests.support.processes import free_port


def _listen(port: int, on_client: Callable[[socket.socket], None]) -> socket.socket:
    """Listen on ``port``; a thread hands every accepted connection to ``on_client``."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            on_client(client)

    threading.Thread(target=accept, daemon=True).start()
    return listener


def _close(listener: socket.socket) -> None:
    # Wakes the thread blocked in accept(); a bare close() would leave the port listening.
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> "TcpProxy":
        self._listener = _listen(self.port, self._forward)
        return self

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                _close(self._listener)
                self._listener = None
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets.update({client, upstream})
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class BlackHole:
    """A TCP server that accepts connections and reads what it is sent, but never answers: a broker
    that hangs. ``waits`` records, per connection, when its first request arrived and when the
    client gave up (closed it), on this process's monotonic clock."""

    def __init__(self) -> None:
        self.port = free_port()
        self.waits: list[tuple[float, float]] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "BlackHole":
        self._listener = _listen(self.port, self._take)
        return self

    def stop(self) -> None:
        if self._listener is not None:
            _close(self._listener)
            self._listener = None

    def _take(self, client: socket.socket) -> None:
        threading.Thread(target=self._swallow, args=(client,), daemon=True).start()

    def _swallow(self, client: socket.socket) -> None:
        first: float | None = None
        with client:
            try:
                while client.recv(65536):
                    first = first or time.monotonic()
            except OSError:
                pass
        if first is not None:
            with self._lock:
                self.waits.append((first, time.monotonic()))
