"""How other apps plug into the stream WebSocket without editing the consumer.

- Snapshot providers: on connect (and reconnect) a socket sends, for each registered kind, the
  current snapshot frame (e.g. reaction counts), so a client never waits for the next change.
- Inbound handlers: client frames of a registered ``type`` (e.g. ``"reaction"``) are handed to the
  app that owns them; the handler may return a frame to send back.

Apps register in their ``AppConfig.ready``.
"""

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


SnapshotProvider = Callable[[int], Awaitable[str | None]]
InboundHandler = Callable[[InboundContext, dict[str, Any]], Awaitable[str | None]]

snapshot_providers: dict[str, SnapshotProvider] = {}
inbound_handlers: dict[str, InboundHandler] = {}


def register_snapshot_provider(kind: str, provider: SnapshotProvider) -> None:
    snapshot_providers[kind] = provider


def register_inbound_handler(frame_type: str, handler: InboundHandler) -> None:
    if frame_type in {"resync", "ping"}:
        raise ValueError(f"'{frame_type}' frames belong to the stream consumer itself")
    inbound_handlers[frame_type] = handler
