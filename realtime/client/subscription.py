"""One stream subscription: join at the tail, then a socket that resumes after every disconnect.

Two tasks: the connection (discovery, the socket, sequencing: duplicates dropped, holes filled with
``resync``, the watchdog) and the dispatcher, which hands items to the application in order and,
with credit, grants a slot back for each one consumed. The queue between them outlives sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import websockets

from realtime.client.errors import ChorusError, Gap, StreamGap
from realtime.client.timing import TokenBucket, backoff

if TYPE_CHECKING:
    from realtime.client.core import ChorusClient

logger = logging.getLogger(__name__)

CLOSE_CLIENT = 4000  # a close the client decided on (watchdog, unfilled hole, history reset)
EARLY_MAX = 1000  # out-of-order events held while a resync fills the hole
GRANT_DELAY = 0.05  # small credit grants wait this long to be sent together
EVENTS = ("comment", "event", "counts", "presence", "state", "gap", "position", "saga", "error")


class _Restart(Exception):
    """Leave this socket and connect again (``reset``: the history was reset, join at the tail)."""

    def __init__(self, reason: str, *, reset: bool = False) -> None:
        super().__init__(reason)
        self.reset = reset


class Subscription:
    """Follows one stream. Handlers (``on(type, handler)``; plain functions or coroutines):

    ``comment(comment, {"seq", "tail"})``, ``event(frame)`` for every sequenced event, once and in
    order, ``counts({"counts", "version"})``, ``presence(viewers)``, ``state(state)`` with
    ``connecting | live | offline | closed``, ``gap(Gap)``, ``position({"seq", "epoch"?})``,
    ``saga(report)``, ``error(ChorusError)`` for error frames. Without a ``gap`` handler a gap
    closes the subscription and ``wait_closed()`` raises ``StreamGap``.
    """

    def __init__(
        self,
        client: ChorusClient,
        stream: str,
        *,
        after: int | None = None,
        epoch: str | int | None = None,
        credit: int | None = None,
        tail: int | None = None,
        first_url: str | None = None,
    ) -> None:
        if credit is not None and not (isinstance(credit, int) and 1 <= credit <= 1_000_000):
            raise ValueError("credit must be an integer from 1 to 1000000")
        self.stream = stream
        self.state = "connecting"
        self.stats: dict[str, Any] = {
            "connections": 0, "duplicates": 0, "resyncs": 0, "received": 0, "holes": [],
            "error_frames": 0,  # error frames received, whatever they said
            "drained": 0,  # sockets handed over by a draining node (a ``draining`` frame)
        }  # fmt: skip
        self.urls: list[str] = []  # every socket URL used, in order
        self._client = client
        self._credit = credit
        self._tail = tail if tail is not None else client.tail_count
        self._epoch = epoch
        self._received = after or 0  # the resume point: every event up to it was received in order
        self._need_tail = after is None
        self._first_url = first_url  # connect here first, without asking discovery
        self._gap_from: dict[str, Any] | None = None
        self._unfilled_at: int | None = None  # where the last socket left a hole unfilled
        self.position = self._at(self._received)
        self._handlers: dict[str, list[Callable[..., Any]]] = defaultdict(list)
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._unconsumed = 0
        self._grantable = 0
        self._attempt = 0
        self._counts_version = -1
        self._ws: Any = None
        self._last_close_error: ChorusError | None = None
        self._draining = False  # the node said it is draining: the close that follows is a hand-over
        self._bucket = TokenBucket(10, 20)
        self._outgoing: list[str] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._live = asyncio.Event()
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._error: BaseException | None = None
        self._connection = asyncio.ensure_future(self._connect_forever())
        self._dispatcher = asyncio.ensure_future(self._dispatch_forever())

    # --- the application's side ------------------------------------------------------------------

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[[], None]:
        """Call ``handler`` for ``event``; returns a function that removes it."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._handlers[event].append(handler)
        return lambda: self.off(event, handler)

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        with contextlib.suppress(ValueError):
            self._handlers[event].remove(handler)

    async def wait_live(self, timeout: float | None = None) -> None:
        """Until the socket is live (``hello`` received); raises what closed the subscription."""
        live = asyncio.ensure_future(self._live.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait({live, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.cancel()
            closed.cancel()
        if not done:
            raise TimeoutError(f"{self.stream}: not live within {timeout}s")
        if not self._live.is_set():
            await self.wait_closed()

    async def wait_closed(self) -> None:
        """Until the subscription is closed; raises the error that closed it (``ChorusError`` for a
        stream that does not exist or a refused token, ``StreamGap`` for a gap no handler took)."""
        await self._closed.wait()
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        """Stop for good: the socket is closed, both tasks end, no timer is left."""
        await self._finish(None)

    def tap(self, kind: str) -> bool:
        """Send a reaction tap on this socket if it is live and the pace allows; False if dropped."""
        return self.state == "live" and self._send({"type": "reaction", "kind": kind}, volatile=True)

    # --- connecting ------------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        try:
            while True:
                code: int | None = None
                self._set_state("connecting")
                try:
                    if self._need_tail:
                        await self._join_tail()
                    url = self._first_url or await self._client.discover(self.stream)
                    self._first_url = None
                    code = await self._session(url)
                except _Restart as restart:
                    code = CLOSE_CLIENT
                    if restart.reset:
                        self._history_reset()
                        continue
                except ChorusError as error:
                    if not error.retryable:
                        raise
                except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                    logger.debug("%s: %s; reconnecting", self.stream, exc)
                delay = await self._after_close(code)
                if delay is None:
                    continue
                self._set_state("offline")
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # it closes the subscription; wait_closed raises it
            self._spawn(self._finish(exc))

    async def _join_tail(self) -> None:
        """Read the latest comments and the position they are current at; the socket resumes there."""
        answer = await self._client.tail(self.stream, self._tail)
        position = answer["position"]
        if self._gap_from is not None:
            self._enqueue("gap", Gap(from_=self._gap_from, to=position, reason="reset"))
            self._gap_from = None
        for comment in answer["results"]:
            self._enqueue("tail", comment)
        self._enqueue("at", position)
        self._epoch = position.get("epoch")
        self._received = position["seq"]
        self._need_tail = False

    async def _session(self, url: str) -> int:
        """One socket, until it closes; returns its close code."""
        params: dict[str, str] = {"after": str(self._received)}
        if self._epoch is not None:
            params["epoch"] = str(self._epoch)
        if self._credit is not None:
            # The room left in the window; what is consumed from now on is granted to this socket.
            params["credit"] = str(max(0, self._credit - self._unconsumed))
            self._grantable = 0
        token = await self._client.current_token()
        if token:
            params["token"] = token
        self.urls.append(url)
        full = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        async with websockets.connect(
            full, open_timeout=self._client.timeout, max_size=None, ping_interval=None, compression=None
        ) as ws:
            self._ws = ws
            self.stats["connections"] += 1
            try:
                return await self._receive(ws)
            finally:
                self._ws = None
                self._live.clear()
                self._outgoing.clear()

    async def _receive(self, ws: Any) -> int:
        loop = asyncio.get_running_loop()
        ping_interval, watchdog = self._client.ping_interval, self._client.watchdog
        early: dict[int, dict[str, Any]] = {}
        resync_due: float | None = None
        last = loop.time()
        pinged = False
        last_error: ChorusError | None = None
        while True:
            ping_due = not pinged and self.state == "live"
            due = [last + (ping_interval if ping_due else watchdog)] + ([resync_due] if resync_due else [])
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.0, min(due) - loop.time()))
            except TimeoutError:
                now = loop.time()
                if now - last >= watchdog:
                    await ws.close(CLOSE_CLIENT, "watchdog")
                    raise _Restart("watchdog") from None
                if now - last >= ping_interval and not pinged and self.state == "live":
                    pinged = True
                    self._send({"type": "ping"})
                if resync_due is not None and now >= resync_due:
                    resync_due = None
                    await self._unfilled(ws, early)
                continue
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                if last_error is not None and code >= 4000:
                    self._last_close_error = last_error
                return code
            last, pinged = loop.time(), False
            try:
                frame = json.loads(message)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "reset":  # the server says this position is void: rebuild from the new tail
                raise _Restart("history reset", reset=True)
            if "epoch" in frame and kind != "error":
                if self._epoch is not None and frame["epoch"] != self._epoch:
                    raise _Restart("epoch changed", reset=True)
                self._epoch = frame["epoch"]
            if kind == "event":
                resync_due = self._on_event(frame, early, resync_due, loop.time())
            elif kind == "hello":
                self._attempt = 0
                self._set_state("live")
                self._live.set()
                self._flush()
            elif kind == "presence":
                self._enqueue("presence", frame.get("viewers"))
            elif kind == "reactions":
                # Versions only grow on a stream; keep the latest when frames cross on a reconnect.
                version = frame.get("version")
                if not isinstance(version, int) or version > self._counts_version:
                    if isinstance(version, int):
                        self._counts_version = version
                    self._enqueue("counts", {"counts": frame.get("counts", {}), "version": version})
            elif kind == "saga":
                self._enqueue("saga", frame.get("saga"))
            elif kind == "error":
                self.stats["error_frames"] += 1
                last_error = self._on_error(frame)
            elif kind == "draining":
                # Every event up to last_seq arrived before this frame; 4503 follows.
                self.stats["drained"] += 1
                self._draining = True

    def _on_event(
        self, frame: dict[str, Any], early: dict[int, dict[str, Any]], resync_due: float | None, now: float
    ) -> float | None:
        """Apply an event once and in order; a hole is held and asked for again with ``resync``."""
        seq = frame.get("seq")
        if not isinstance(seq, int):
            return resync_due
        if seq <= self._received:
            self.stats["duplicates"] += 1
            return resync_due
        if seq > self._received + 1:
            early[seq] = frame
            if len(early) > EARLY_MAX:
                raise _Restart("too many events held")
            if resync_due is None:
                self.stats["holes"].append((self._received + 1, seq))
                self.stats["resyncs"] += 1
                resync: dict[str, Any] = {"type": "resync", "after": self._received}
                if self._epoch is not None:
                    resync["epoch"] = self._epoch
                self._send(resync)
                return now + self._client.resync_timeout
            return resync_due
        self._accept(frame)
        self._drain_early(early)
        if resync_due is not None and not early:
            self._unfilled_at = None
            return None
        return resync_due

    def _drain_early(self, early: dict[int, dict[str, Any]]) -> None:
        while (following := early.pop(self._received + 1, None)) is not None:
            self._accept(following)
        for held in [seq for seq in early if seq <= self._received]:
            del early[held]

    async def _unfilled(self, ws: Any, early: dict[int, dict[str, Any]]) -> None:
        """``resync`` did not fill the hole: reconnect once from the last event received; the same
        hole on the next socket means the log lacks those events: a gap, reported, then past it."""
        if not early:
            return
        if self._unfilled_at != self._received:
            self._unfilled_at = self._received
            await ws.close(CLOSE_CLIENT, "hole not filled")
            raise _Restart("hole not filled")
        self._unfilled_at = None
        first = min(early)
        self._enqueue("gap", Gap(from_=self._at(self._received), to=self._at(first - 1), reason="missing"))
        self._received = first - 1
        self._drain_early(early)

    def _accept(self, frame: dict[str, Any]) -> None:
        self._received = frame["seq"]
        self.stats["received"] += 1
        self._enqueue("event", frame)

    def _on_error(self, frame: dict[str, Any]) -> ChorusError:
        error = ChorusError(0, str(frame.get("code", "error")), str(frame.get("message", "")), body=frame)
        if frame.get("code") == "history_reset":
            raise _Restart("history reset", reset=True)
        # Before hello an error is the reason for the close that follows (reported with it).
        # too_far_behind (then 4408) carries last_seq: every event up to it arrived before this
        # frame, so resuming from what was received resumes from last_seq.
        if self.state != "live" or "last_seq" in frame:
            return error
        if frame.get("code") in ("rate_limited", "overloaded", "unavailable") and self._credit is not None:
            # The refused frame may have been a credit grant: start again from a known credit.
            raise _Restart("a frame was refused")
        self._enqueue("error", error)
        return error

    async def _after_close(self, code: int | None) -> float | None:
        """The close-code table of docs/API.md: seconds to wait, or None to reconnect now; raises
        for a close that is final."""
        error, self._last_close_error = self._last_close_error, None
        draining, self._draining = self._draining, False
        low, high = self._client.backoff
        if code == 4404:
            raise ChorusError(
                0,
                error.code if error else "stream_not_found",
                error.message if error else "no such stream",
                close_code=code,
            )
        if code == 4400:
            # Bad parameters: a resume point ahead of the stream's head means its history was reset.
            try:
                head = (await self._client.tail(self.stream, 0))["position"]
            except ChorusError as failure:
                if not failure.retryable:
                    raise
                return backoff(self._attempt, low, high)  # checked again on the next refusal
            moved = head.get("epoch") is not None and self._epoch is not None and head["epoch"] != self._epoch
            if moved or self._received > head["seq"]:
                self._history_reset()
                return None
            raise ChorusError(
                0, error.code if error else "bad_request", error.message if error else "", close_code=code
            )
        if code == 4401:
            if await self._client.renew_token():
                return backoff(0, low, high)
            raise ChorusError(0, "not_authenticated", "the server refused the token", close_code=code)
        if code == 4503 and draining:
            # A hand-over, not an outage: reconnect now through discovery, spread out by a random
            # share of the shortest backoff so that a node's clients do not all arrive together.
            self._attempt = 0
            return low * random.random()
        if code in (4408, 4503):  # too far behind, or the node could not serve: elsewhere soon, spread out
            self._attempt = 0
            return low + low * random.random()
        if code == 4429:  # we sent too much
            self._attempt = max(self._attempt, 6)
        delay = backoff(self._attempt, low, high)
        self._attempt += 1
        return delay

    def _history_reset(self) -> None:
        self._gap_from = self._at(self._received)
        self._epoch = None
        self._need_tail = True

    # --- dispatching -----------------------------------------------------------------------------

    def _enqueue(self, kind: str, item: Any) -> None:
        if kind == "event" and self._credit is not None:
            self._unconsumed += 1
        self._queue.put_nowait((kind, item))

    async def _dispatch_forever(self) -> None:
        try:
            while True:
                kind, item = await self._queue.get()
                await self._dispatch(kind, item)
                if kind == "event" and self._credit is not None:
                    self._consumed()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a gap no one took, or a failing handler
            self._spawn(self._finish(exc))

    async def _dispatch(self, kind: str, item: Any) -> None:
        if kind == "gap":
            if not self._handlers["gap"]:
                raise StreamGap(item)
            await self._emit("gap", item)
        elif kind == "tail":
            await self._emit("comment", item, {"seq": item["seq"], "tail": True})
        elif kind == "at":
            self.position = item
            await self._emit("position", item)
        elif kind == "event":
            await self._emit("event", item)
            if item.get("event") == "comment.created":
                await self._emit("comment", item["data"], {"seq": item["seq"], "tail": False})
            self.position = self._at(item["seq"])
            await self._emit("position", self.position)
        else:
            await self._emit(kind, item)

    async def _emit(self, event: str, *args: Any) -> None:
        for handler in list(self._handlers[event]):
            result = handler(*args)
            if inspect.isawaitable(result):
                await result

    def _consumed(self) -> None:
        """An event left the window: grant its slot back (to whichever socket is current)."""
        self._unconsumed -= 1
        self._grantable += 1
        assert self._credit is not None
        if self._grantable >= math.ceil(self._credit / 2):
            self._flush()
        else:
            self._flush_later(GRANT_DELAY)

    # --- sending ---------------------------------------------------------------------------------

    def _send(self, frame: dict[str, Any], *, volatile: bool = False) -> bool:
        """Send within the client's pace (under the server's inbound limit); a volatile frame is
        dropped rather than queued."""
        if self._ws is None:
            return False
        if self._outgoing or not self._bucket.take():
            if volatile:
                return False
            self._outgoing.append(json.dumps(frame))
            self._flush_later(self._bucket.wait())
            return True
        self._spawn(self._write(json.dumps(frame)))
        return True

    def _flush(self) -> None:
        """Send queued frames and the credit owed, as far as the pace allows."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._ws is None or self.state != "live":
            return
        while self._outgoing and self._bucket.take():
            self._spawn(self._write(self._outgoing.pop(0)))
        if self._grantable and not self._outgoing and self._bucket.take():
            self._spawn(self._write(json.dumps({"type": "credit", "n": min(self._grantable, 1_000_000)})))
            self._grantable = 0
        if self._outgoing or self._grantable:
            self._flush_later(max(self._bucket.wait(), 0.001))

    def _flush_later(self, delay: float) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(delay, self._flush)

    async def _write(self, text: str) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(text)

    # --- state -----------------------------------------------------------------------------------

    async def _finish(self, error: BaseException | None) -> None:
        if self._closed.is_set():
            return
        self._error = error
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        current = asyncio.current_task()
        for task in (self._connection, self._dispatcher):
            if task is not current:
                task.cancel()
        for task in (self._connection, self._dispatcher):
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for pending in list(self._tasks):
            if pending is not current:
                pending.cancel()
        self._set_state("closed")
        self._closed.set()
        self._client.forget(self)
        if error is not None and not isinstance(error, StreamGap):
            for handler in list(self._handlers["error"]):
                with contextlib.suppress(Exception):
                    result = handler(error)
                    if inspect.isawaitable(result):
                        await result
        self._handlers.clear()

    def _set_state(self, state: str) -> None:
        if self.state == state or self.state == "closed":
            return
        self.state = state
        for handler in list(self._handlers["state"]):
            result = handler(state)
            if inspect.isawaitable(result):
                self._spawn(result)

    def _spawn(self, work: Any) -> None:
        """Run ``work`` on its own, holding a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _at(self, seq: int) -> dict[str, Any]:
        return {"seq": seq} if self._epoch is None else {"epoch": self._epoch, "seq": seq}
