"""The client: HTTP calls, the outbox of posts, discovery, and the factory of subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from realtime.client.errors import ChorusError, http_error
from realtime.client.outbox import Outbox
from realtime.client.subscription import Subscription
from realtime.client.timing import backoff

logger = logging.getLogger(__name__)


class ChorusClient:
    """A client of one Chorus deployment; use it as ``async with ChorusClient(url) as client``.

    ``token`` (or ``get_token``, called when there is none yet and again after a 401 or a 4401
    close) authenticates writes and sockets; reads need none. ``discovery`` lists more base URLs to
    ask for a node when ``base_url`` is down. ``outbox`` is a file path that keeps unsent posts
    across restarts (memory by default). Times are in seconds.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        get_token: Callable[[], str | Awaitable[str]] | None = None,
        http: httpx.AsyncClient | None = None,
        discovery: list[str] | None = None,
        outbox: str | os.PathLike[str] | Outbox | None = None,
        backoff: tuple[float, float] = (0.5, 20.0),
        ping_interval: float = 10.0,
        watchdog: float = 25.0,
        timeout: float = 10.0,
        resync_timeout: float = 5.0,
        tail: int = 50,
        resume_outbox: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.discovery = [url.rstrip("/") for url in discovery] if discovery else [self.base_url]
        self.backoff = backoff
        self.ping_interval = ping_interval
        self.watchdog = watchdog
        self.timeout = timeout
        self.resync_timeout = resync_timeout
        self.tail_count = tail
        self._token = token
        self._get_token = get_token
        self._renewing: asyncio.Future[bool] | None = None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._own_http = http is None
        self._outbox = outbox if isinstance(outbox, Outbox) else Outbox(outbox)
        self._resume_outbox = resume_outbox
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, list[Callable[..., Any]]] = defaultdict(list)
        self._subscriptions: set[Subscription] = set()
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> ChorusClient:
        if self._resume_outbox and self._outbox.entries():
            self._start_sending()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """``posted(entry, accepted)`` when an outboxed post was accepted (also one left by an
        earlier process), ``failed(entry, error)`` when it was refused for good."""
        if event not in ("posted", "failed"):
            raise ValueError("a client emits 'posted' and 'failed'")
        self._handlers[event].append(handler)

    # --- subscriptions ---------------------------------------------------------------------------

    def subscribe(
        self,
        stream: str,
        *,
        after: int | None = None,
        epoch: str | int | None = None,
        credit: int | None = None,
        tail: int | None = None,
        first_url: str | None = None,
    ) -> Subscription:
        """Follow a stream (in a running event loop). Without ``after`` it joins at the tail: the
        latest ``tail`` comments first (``comment`` with ``tail: True``), then every later event.
        With ``after`` it resumes from there. ``credit`` bounds the events delivered and not yet
        consumed (handlers returned); ``first_url`` is a socket URL to try before discovery."""
        self._ensure_open()
        subscription = Subscription(
            self, stream, after=after, epoch=epoch, credit=credit, tail=tail, first_url=first_url
        )
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def discover(self, stream: str) -> str:
        """The socket URL of the node to use now: discovery (each base URL, in random order), else
        the API's own host."""
        for base in random.sample(self.discovery, len(self.discovery)):
            try:
                answer = await self._request("GET", f"/api/v1/realtime/connect?stream={quote(stream)}", base=base)
            except ChorusError as error:
                if error.status == 404:
                    raise
                continue
            if isinstance(answer, dict) and isinstance(answer.get("url"), str):
                return answer["url"]
        scheme_host = self.base_url.replace("http", "ws", 1)
        return f"{scheme_host}/ws/streams/{quote(stream)}/"

    async def tail(self, stream: str, count: int) -> dict[str, Any]:
        """The latest ``count`` comments and the position they are current at (one snapshot)."""
        return await self._request("GET", f"/api/v1/streams/{quote(stream)}/comments?tail={count}", auth=False)

    # --- writes ----------------------------------------------------------------------------------

    async def post_comment(
        self, stream: str, body: str, *, parent: str | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """Post a comment; returns the acceptance ``{"id", "status": "pending", "status_url"}``.
        Kept in the outbox under one Idempotency-Key (``key``, or a fresh one) and sent again while
        the network or the server fails: never lost, never doubled. A 4xx raises ``ChorusError``."""
        payload: dict[str, Any] = {"body": body}
        if parent is not None:
            payload["parent"] = parent
        return await self._enqueue(stream, f"/api/v1/streams/{quote(stream)}/comments", payload, key)

    async def comment_and_react(self, stream: str, body: str, kind: str, *, key: str | None = None) -> dict[str, Any]:
        """The "comment and react" saga (docs/API.md); returns its report. Outboxed like a post."""
        path = f"/api/v1/streams/{quote(stream)}/comment-and-react"
        return await self._enqueue(stream, path, {"body": body, "kind": kind}, key)

    def pending(self) -> list[dict[str, Any]]:
        """Posts not yet accepted, oldest first."""
        return self._outbox.entries()

    async def tap(self, stream: str, kind: str) -> bool:
        """A volatile reaction tap: on a live subscription's socket if there is one, else over
        HTTP; dropped (False), never queued, when offline or over the pace."""
        for subscription in self._subscriptions:
            if subscription.stream == stream and subscription.state == "live":
                return subscription.tap(kind)
        try:
            await self._request("POST", f"/api/v1/streams/{quote(stream)}/reactions", json={"kind": kind})
        except ChorusError as error:
            if error.retryable or error.code == "closed":
                return False
            raise
        return True

    async def react(self, comment_id: str, kind: str) -> dict[str, Any]:
        """Add your reaction of ``kind`` to a comment (idempotent)."""
        return await self._request("PUT", f"/api/v1/comments/{quote(comment_id)}/reactions/{quote(kind)}")

    async def unreact(self, comment_id: str, kind: str) -> None:
        await self._request("DELETE", f"/api/v1/comments/{quote(comment_id)}/reactions/{quote(kind)}")

    async def get_comment(self, comment_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/api/v1/comments/{quote(comment_id)}")

    async def edit_comment(self, comment_id: str, body: str, *, version: int) -> dict[str, Any]:
        """Edit if still at ``version`` (If-Match); a comment changed since raises status 412."""
        return await self._request(
            "PATCH", f"/api/v1/comments/{quote(comment_id)}", json={"body": body}, headers={"If-Match": f'"{version}"'}
        )

    async def delete_comment(self, comment_id: str) -> None:
        await self._request("DELETE", f"/api/v1/comments/{quote(comment_id)}")

    async def close(self) -> None:
        """Close every subscription and stop sending; posts still in the outbox stay there (a
        client made later on the same outbox sends them) and their callers get code ``closed``."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(ChorusError(0, "closed", "the client was closed; the post stays in the outbox"))
        self._waiters.clear()
        if self._own_http:
            await self._http.aclose()

    # --- the outbox ------------------------------------------------------------------------------

    async def _enqueue(self, stream: str, path: str, payload: dict[str, Any], key: str | None) -> dict[str, Any]:
        self._ensure_open()
        entry: dict[str, Any] = {"key": key or str(uuid.uuid4()), "stream": stream, "path": path, "payload": payload}
        entry["created"] = time.time()
        self._outbox.add(entry)  # stored before the first attempt
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[entry["key"]] = waiter
        self._start_sending()
        return await asyncio.shield(waiter)

    def _start_sending(self) -> None:
        self._wake.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_outbox())

    async def _send_outbox(self) -> None:
        """Send the outbox in order, one post at a time, until it is empty."""
        attempt = 0
        while not self._closed and (entries := self._outbox.entries()):
            entry = entries[0]
            try:
                accepted = await self._request(
                    "POST", entry["path"], json=entry["payload"], headers={"Idempotency-Key": entry["key"]}
                )
            except ChorusError as error:
                if error.retryable:
                    delay = error.retry_after if error.retry_after is not None else backoff(attempt, *self.backoff)
                    attempt += 1
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=delay)
                    continue
                await self._settle(entry, None, error)
                continue
            attempt = 0
            await self._settle(entry, accepted, None)

    async def _settle(self, entry: dict[str, Any], accepted: Any, error: ChorusError | None) -> None:
        self._outbox.remove(entry["key"])
        waiter = self._waiters.pop(entry["key"], None)
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(accepted)
            else:
                waiter.set_exception(error)
        for handler in list(self._handlers["posted" if error is None else "failed"]):
            result = handler(entry, accepted if error is None else error)
            if inspect.isawaitable(result):
                await result

    # --- HTTP ------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        base: str | None = None,
        renewed: bool = False,
    ) -> Any:
        """One API call: JSON in and out, the token, a 401 renews it once."""
        self._ensure_open()
        sent = {"Accept": "application/json", **(headers or {})}
        token = await self.current_token() if auth else None
        if token:
            sent["Authorization"] = f"Token {token}"
        try:
            response = await self._http.request(
                method, (base or self.base_url) + path, json=json, headers=sent, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise ChorusError(0, "timeout", str(exc) or "timed out") from exc
        except httpx.HTTPError as exc:
            raise ChorusError(0, "network", str(exc) or type(exc).__name__) from exc
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        renew = response.status_code == 401 and auth and self._get_token is not None and not renewed
        if renew and await self.renew_token():
            return await self._request(method, path, json=json, headers=headers, base=base, renewed=True)
        if response.status_code >= 400:
            raise http_error(response.status_code, data, response.headers.get("Retry-After"))
        return data

    async def current_token(self) -> str | None:
        if self._token is None and self._get_token is not None:
            await self.renew_token()
        return self._token

    async def renew_token(self) -> bool:
        """Ask ``get_token`` for a fresh token (once for concurrent callers); False without one."""
        if self._get_token is None:
            return False
        if self._renewing is None:
            self._renewing = asyncio.ensure_future(self._fetch_token())
        renewing = self._renewing
        try:
            return await asyncio.shield(renewing)
        finally:
            if renewing.done():
                self._renewing = None

    async def _fetch_token(self) -> bool:
        assert self._get_token is not None
        token = self._get_token()
        self._token = await token if inspect.isawaitable(token) else token
        return bool(self._token)

    def _ensure_open(self) -> None:
        if self._closed:
            raise ChorusError(0, "closed", "the client was closed")
