"""Hot streams: detection from the tap rate, admin pins, and which keys a tap goes to.

Each process keeps a small cache of which streams are hot (``HotStreams``, one instance added to
the process's node by the reactions app: ``node.part(HotStreams)``), refreshed at most once a second from
Redis (``P:rx:hot``, a sorted set of stream id -> hot-until epoch second, and ``P:rx:pin``, a
hash of stream id -> ``hot``/``cold`` set by ``manage.py hot_streams``). On refresh the process
also sums the previous second's tap rate (all shards) of the streams it saw taps for, and marks
those at or over ``CHORUS_HOT_STREAM_THRESHOLD`` hot for ``CHORUS_HOT_STREAM_HOLD_SECONDS``.

While processes disagree (for up to a second after a change) some taps of a stream go to shard 0
and some to the shards: harmless, because every read and every flush merges all shards.
"""

import time
from dataclasses import dataclass
from typing import cast

import redis
from django.conf import settings
from redis.typing import ZSetScoredMembers

from project.redis import redis_text
from reactions.redis_counters import _prefix, rate_key, redis_client, shard_count

REFRESH_SECONDS = 1.0
PIN_MODES = ("hot", "cold")


def hot_key() -> str:
    return f"{_prefix()}:hot"


def pin_key() -> str:
    return f"{_prefix()}:pin"


def _rates(client: redis.Redis, stream_ids: list[int], second: int) -> dict[int, int]:
    """Taps per second of each stream during ``second``, summed over all shard keys."""
    pipe = client.pipeline(transaction=False)
    for stream_id in stream_ids:
        for shard in range(shard_count()):
            pipe.get(rate_key(stream_id, shard, second))
    values = pipe.execute()
    per = shard_count()
    return {
        stream_id: sum(int(v) for v in values[i * per : (i + 1) * per] if v is not None)
        for i, stream_id in enumerate(stream_ids)
    }


class HotStreams:
    """This process's view of which streams are hot (per process; see the module docstring)."""

    def __init__(self) -> None:
        self._hot: frozenset[int] = frozenset()
        self._seen: dict[int, int] = {}  # stream id -> last second (local clock) it was tapped here
        self._refreshed = 0.0

    def reset(self) -> None:
        """Forget the cached view; the next tap reloads it (after Redis keys were cleared)."""
        self._hot = frozenset()
        self._seen = {}
        self._refreshed = 0.0

    def is_hot(self, stream_id: int) -> bool:
        return stream_id in self._hot

    def note_tap(self, stream_id: int) -> None:
        self._seen[stream_id] = int(time.time())

    def due(self) -> bool:
        return time.monotonic() - self._refreshed >= REFRESH_SECONDS

    def refresh(self, client: redis.Redis | None = None) -> frozenset[int]:
        """Detect newly hot streams among those tapped here, then reload the hot set and pins."""
        client = client or redis_client()
        self._refreshed = time.monotonic()
        now = int(client.time()[0])
        # Judge the last full second; keep streams tapped this second for the next refresh.
        seen = sorted(sid for sid, second in self._seen.items() if second >= now - 1)
        self._seen = {sid: second for sid, second in self._seen.items() if second >= now}
        if seen:
            over = [sid for sid, rate in _rates(client, seen, now - 1).items() if rate >= _threshold()]
            if over:
                client.zadd(hot_key(), {str(sid): now + settings.CHORUS_HOT_STREAM_HOLD_SECONDS for sid in over})
        self._hot = hot_stream_ids_now(client)
        return self._hot


def _threshold() -> int:
    return max(1, settings.CHORUS_HOT_STREAM_THRESHOLD)


def _apply_pins(detected: set[int], pins: dict[bytes, bytes]) -> frozenset[int]:
    hot = set(detected)
    for raw_sid, mode in pins.items():
        (hot.add if mode == b"hot" else hot.discard)(int(raw_sid))
    return frozenset(hot)


def stream_hot_pin(*, stream_id: int, mode: str | None) -> None:
    """Pin a stream ``"hot"`` or ``"cold"`` regardless of its rate, or ``None`` to follow the rate.

    Every process picks the change up within ``REFRESH_SECONDS``.
    """
    if mode is None:
        redis_client().hdel(pin_key(), str(stream_id))
        return
    if mode not in PIN_MODES:
        raise ValueError(f"pin mode must be one of {PIN_MODES} or None")
    redis_client().hset(pin_key(), str(stream_id), mode)


@dataclass(frozen=True)
class HotStream:
    stream_id: int
    rate: int  # taps during the last full second
    pinned: str | None
    hot_until: int | None  # epoch second, for detected (not pinned) streams


def hot_streams_list() -> list[HotStream]:
    """Hot streams (detected or pinned hot) with their current rate; pinned-cold ones too, marked."""
    client = redis_client()
    now = int(client.time()[0])
    # redis-py types the reply as members or (member, score) pairs, whichever ``withscores`` asks.
    scored = cast(ZSetScoredMembers, client.zrangebyscore(hot_key(), now, "+inf", withscores=True))
    detected = {int(sid): int(score) for sid, score in scored}
    pins = {int(sid): redis_text(mode) for sid, mode in client.hgetall(pin_key()).items()}
    ids = sorted(set(detected) | set(pins))
    rates = _rates(client, ids, now - 1) if ids else {}
    return [
        HotStream(stream_id=sid, rate=rates.get(sid, 0), pinned=pins.get(sid), hot_until=detected.get(sid))
        for sid in ids
    ]


def hot_stream_ids_now(client: redis.Redis | None = None) -> frozenset[int]:
    """The hot set as Redis holds it now (for the coalescing emitter)."""
    client = client or redis_client()
    now = int(client.time()[0])
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(hot_key(), now, "+inf")
    pipe.hgetall(pin_key())
    detected, pins = pipe.execute()
    return _apply_pins({int(sid) for sid in detected}, pins)
