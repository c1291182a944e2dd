"""How other apps plug into the stream WebSocket without editing the consumer.

- Snapshot providers: on connect (and reconnect) a socket sends, for each registered kind, the
  current snapshot frame (e.g. reaction counts), so a client never waits for the next change.
  Sockets of one stream that connect together share one call (a storm asks once per batch, not
  once per socket), and never one that started before they asked: a socket is registered with
  the hub before it asks, so every later change reaches it either in the answer or live.
- Inbound handlers: client frames of a registered ``type`` (e.g. ``"reaction"``) are handed to the
  app that owns them; the handler may return a frame to send back.
- Page config providers: the live page (``realtime/pages.py``) is given, under each registered
  name, what the provider returns for the stream and viewer (e.g. the reactions of its latest comments).
- Stream admin actions: extra actions on the streams' admin page (e.g. pinning a stream hot).
- Frame admission: every inbound client frame is first put to the registered admission checks
  (the edge's rate limit and load shedding, ``gateway``); a refusal is answered with an error frame.

Apps register in their ``AppConfig.ready``.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


class FrameRejected(ValueError):
    """Raised by an inbound handler: the client gets an error frame with this message."""


@dataclass(frozen=True)
class InboundContext:
    """What an inbound handler may know about the socket a frame came from."""

    stream_id: int
    slug: str
    scope: dict[str, Any]


@dataclass(frozen=True)
class FrameRefusal:
    """Why an inbound WebSocket frame was refused: ``rate_limited``, ``overloaded`` or ``unavailable``."""

    code: str
    retry_after: float

    @property
    def message(self) -> str:
        return f"frame refused ({self.code}); retry after {self.retry_after:.1f}s"


SnapshotProvider = Callable[[int], Awaitable[str | None]]
InboundHandler = Callable[[InboundContext, dict[str, Any]], Awaitable[str | None]]

FrameAdmission = Callable[[dict[str, Any]], Awaitable[FrameRefusal | None]]

snapshot_providers: dict[str, SnapshotProvider] = {}
inbound_handlers: dict[str, InboundHandler] = {}
frame_admissions: list[FrameAdmission] = []
PageConfigProvider = Callable[..., Any]  # (*, stream_id: int, user_id: int | None, limit: int) -> JSON-able
page_config_providers: dict[str, PageConfigProvider] = {}
stream_admin_actions: list[Callable[..., None]] = []  # Django admin actions: (modeladmin, request, queryset)


class SharedSnapshots:
    """A provider whose concurrent calls for one stream are answered by one call of ``provider``."""

    def __init__(self, provider: SnapshotProvider) -> None:
        self._provider = provider
        self._next: dict[int, asyncio.Future[str | None]] = {}  # stream -> answer of the call not yet made
        self._running: dict[int, asyncio.Task[None]] = {}

    async def __call__(self, stream_id: int) -> str | None:
        future = self._next.get(stream_id)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._next[stream_id] = loop.create_future()
            if stream_id not in self._running:
                self._running[stream_id] = loop.create_task(self._calls(stream_id))
        return await asyncio.shield(future)  # one caller leaving must not cancel the others' answer

    async def _calls(self, stream_id: int) -> None:
        try:
            while (future := self._next.pop(stream_id, None)) is not None:
                try:
                    future.set_result(await self._provider(stream_id))
                except Exception as exc:
                    future.set_exception(exc)
                except BaseException:
                    future.cancel()
                    raise
        finally:
            del self._running[stream_id]


def register_snapshot_provider(kind: str, provider: SnapshotProvider) -> None:
    snapshot_providers[kind] = SharedSnapshots(provider)


def register_inbound_handler(frame_type: str, handler: InboundHandler) -> None:
    if frame_type in {"resync", "ping"}:
        raise ValueError(f"'{frame_type}' frames belong to the stream consumer itself")
    inbound_handlers[frame_type] = handler


def register_frame_admission(check: FrameAdmission) -> None:
    """Put every inbound frame to ``check`` (given the socket's scope) before it is handled."""
    if check not in frame_admissions:
        frame_admissions.append(check)


async def frame_admit(scope: dict[str, Any]) -> FrameRefusal | None:
    """The first refusal of the registered admission checks, else ``None``."""
    for check in frame_admissions:
        refusal = await check(scope)
        if refusal is not None:
            return refusal
    return None


def register_page_config(name: str, provider: PageConfigProvider) -> None:
    page_config_providers[name] = provider


def register_stream_admin_action(action: Callable[..., None]) -> None:
    if action not in stream_admin_actions:
        stream_admin_actions.append(action)
