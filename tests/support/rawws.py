"""A bare WebSocket client on a plain socket: it can stop reading entirely, like a stuck browser tab."""

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any


class RawWs:
    def __init__(self, port: int, path: str, *, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        # A small receive window, so the server's buffers (not this client's) hold the backlog.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.pending = b""
        while b"\r\n\r\n" not in self.pending:
            chunk = self.sock.recv(1)  # byte by byte: read nothing past the handshake
            assert chunk, "connection closed during the handshake"
            self.pending += chunk
        assert self.pending.startswith(b"HTTP/1.1 101"), self.pending
        self.pending = b""
        self._buf = bytearray()  # read and not yet parsed: kept from one read_all to the next
        self.eof = False  # the server ended the TCP connection (with or without a close frame)

    def read_all(
        self, *, timeout: float, stop: Callable[[dict[str, Any]], bool] | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Read until the server closes, ``stop(frame)`` is true, or ``timeout``: text frames, close code.

        A close frame without a code reads as 1005 (RFC 6455's "no status"); ``eof`` tells an ended
        connection from a timeout.
        """
        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while True:
            while (parsed := _parse_frame(self._buf, 0)) is not None:
                opcode, payload, end = parsed
                del self._buf[:end]
                if opcode == 1:
                    frames.append(json.loads(payload))
                    if stop is not None and stop(frames[-1]):
                        return frames, None
                elif opcode == 8:
                    return frames, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if self.eof or time.monotonic() >= deadline:
                return frames, None
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
            self._buf += chunk

    def send(self, payload: bytes | str, *, opcode: int | None = None) -> None:
        """Send one masked client frame (text for ``str``, binary for ``bytes`` unless ``opcode`` says)."""
        if isinstance(payload, str):
            payload, opcode = payload.encode(), 1 if opcode is None else opcode
        self.sock.sendall(client_frame(payload, opcode=2 if opcode is None else opcode))

    def close(self) -> None:
        self.sock.close()


def client_frame(payload: bytes, *, opcode: int, fin: bool = True) -> bytes:
    """One client frame, masked as RFC 6455 requires of clients."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _parse_frame(buf: bytearray, pos: int) -> tuple[int, bytes, int] | None:
    """One unmasked server frame at ``pos``: (opcode, payload, position after it), or None if incomplete."""
    if len(buf) < pos + 2:
        return None
    opcode, length, offset = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
    if length == 126:
        if len(buf) < pos + 4:
            return None
        length, offset = struct.unpack_from("!H", buf, pos + 2)[0], pos + 4
    elif length == 127:
        if len(buf) < pos + 10:
            return None
        length, offset = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
    if len(buf) < offset + length:
        return None
    return opcode, bytes(buf[offset : offset + length]), offset + length
