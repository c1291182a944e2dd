"""A real WebSocket client running in its own thread, recording every frame it receives."""

import asyncio
import json
import threading
import time
from typing import Any

import websockets


class WsClient:
    def __init__(self, url: str, *, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._ws: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        self.wait_for(lambda frames: frames or self.close_code is not None, timeout=15, what="first frame")

    async def _run(self) -> None:
        try:
            async with websockets.connect(self.url, max_size=None, additional_headers=self.headers) as ws:
                self._ws = ws
                async for message in ws:
                    with self._cond:
                        self.frames.append(json.loads(message))
                        self._cond.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            with self._cond:
                self.close_code = self._ws.close_code if self._ws is not None else -1
                if self.close_code is None:
                    self.close_code = 1006
                self._cond.notify_all()

    def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        asyncio.run_coroutine_threadsafe(self._ws.send(text), self._loop).result(timeout=5)

    def send_bytes(self, data: bytes) -> None:
        asyncio.run_coroutine_threadsafe(self._ws.send(data), self._loop).result(timeout=5)

    def wait_for(self, predicate: Any, *, timeout: float, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self.frames)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.url}: timed out waiting for {what}; last frames {self.frames[-3:]}")
                self._cond.wait(remaining)

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return [frame for frame in self.frames if frame.get("type") == "event"]

    def wait_for_seq(self, seq: int, *, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until an event with this sequence number arrived; return all events so far."""
        self.wait_for(lambda frames: any(f.get("seq") == seq for f in frames), timeout=timeout, what=f"seq {seq}")
        return self.events()

    def wait_closed(self, timeout: float = 10) -> int:
        self.wait_for(lambda _frames: self.close_code is not None, timeout=timeout, what="close")
        assert self.close_code is not None
        return self.close_code

    def close(self) -> None:
        if self._ws is not None and self.close_code is None:
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(timeout=5)
        self._task.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
