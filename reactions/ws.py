"""The reactions side of the stream WebSocket: tap frames in, the counts snapshot on connect.

Client frame ``{"type": "reaction", "kind": "heart"}`` counts one tap for the socket's user
(resolved at connect by ``realtime.auth``); no reply on success, an error frame otherwise.
"""

from typing import Any

from redis.exceptions import RedisError

from reactions.frames import counts_frame
from reactions.redis_counters import async_redis_client, counter_state_read_async, counts_of, version_key
from reactions.services.taps import TapLimited, UnknownKind, reaction_tap_async
from realtime import protocol
from realtime.extensions import FrameRejected, InboundContext


async def reaction_frame_handle(context: InboundContext, frame: dict[str, Any]) -> str | None:
    user_id = context.scope.get("user_id")
    if user_id is None:
        return protocol.error_frame(
            code="auth_required", message="sign in (session cookie or ?token=) to send reactions"
        )
    try:
        await reaction_tap_async(stream_id=context.stream_id, user_id=user_id, kind=frame.get("kind"))  # type: ignore[arg-type]
    except UnknownKind as exc:
        raise FrameRejected(f"'kind' {exc}") from None
    except TapLimited as exc:
        return protocol.error_frame(code="rate_limited", message=str(exc))
    except RedisError:
        return protocol.error_frame(code="unavailable", message="reactions are unavailable right now")
    return None


async def reaction_counts_snapshot(stream_id: int) -> str | None:
    """The stream's current counts for a (re)connecting socket; ``None`` before the first tap."""
    try:
        counts = counts_of(await counter_state_read_async(stream_id=stream_id))
        if not counts:
            return None
        version = int(await async_redis_client().get(version_key(stream_id)) or 0)
    except RedisError:
        return None  # the socket still works; counts follow with the next frame
    return counts_frame(counts=counts, version=version)
