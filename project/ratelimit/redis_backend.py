"""The Redis backend of the rate limiter: limits shared by every node.

The token bucket is one Lua script that refills, spends and adapts the tier atomically in Redis;
the fixed window (``WINDOW_SCRIPT``) counts per second. Both scripts read the Redis server's clock
(``TIME``), never a node's, so every node that shares the Redis sees the same bucket: no clock skew
between nodes can mint extra tokens. Redis >= 5 replicates
scripts by their effects, which is what makes reading ``TIME`` inside a script allowed.
"""

import inspect
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.typing import EncodableT

from project.redis import pipeline_script

# KEYS[1] bucket hash {t: tokens, ts: last refill}      (per subject and service)
# KEYS[2] subject hash {r: decayed request count, ts, tier: automatic tier, calm: since when calm}
# KEYS[3] pinned tier of the subject (a string set from the admin), may not exist
# ARGV: cost, forced tier ('' = pinned or automatic), hot_above, regular_below, hold, window,
#       then for the tiers regular, hot, trusted, internal: capacity, refill per second.
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local hot_above, regular_below = tonumber(ARGV[3]), tonumber(ARGV[4])
local hold, window = tonumber(ARGV[5]), tonumber(ARGV[6])

local s = redis.call('HMGET', KEYS[2], 'r', 'ts', 'tier', 'calm')
local r = tonumber(s[1]) or 0
local last = tonumber(s[2]) or now
local auto = s[3] or 'regular'
local calm = tonumber(s[4]) or 0
r = r * math.exp(-math.max(0, now - last) / window) + 1
local rate = r / window
if auto == 'regular' then
  if rate > hot_above then auto = 'hot'; calm = 0 end
elseif auto == 'hot' then
  if rate < regular_below then
    if calm == 0 then calm = now end
    if now - calm >= hold then auto = 'regular'; calm = 0 end
  else
    calm = 0
  end
end
redis.call('HSET', KEYS[2], 'r', tostring(r), 'ts', tostring(now), 'tier', auto, 'calm', tostring(calm))
redis.call('PEXPIRE', KEYS[2], math.ceil((window * 20 + hold) * 1000))

local tier = ARGV[2]
if tier == '' then
  tier = redis.call('GET', KEYS[3]) or auto
end
local index = ({regular = 0, hot = 1, trusted = 2, internal = 3})[tier] or 0
local capacity = tonumber(ARGV[7 + index * 2])
local refill = tonumber(ARGV[8 + index * 2])

local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1]) or capacity
local ts = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * refill)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / refill
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity / refill + 1) * 1000))
local reset = (capacity - tokens) / refill
return {allowed, tostring(tokens), tostring(retry), tostring(reset), tier, tostring(rate), tostring(capacity)}
"""

TIERS = ("regular", "hot", "trusted", "internal")


@dataclass(frozen=True)
class BucketResult:
    """The outcome of one check; seconds are measured on the Redis server's clock."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    tier: str
    recent_rate: float


class TokenBucket:
    """Runs the token-bucket script (by SHA, loading it once) against one Redis client."""

    def __init__(self, client: redis.Redis | aioredis.Redis) -> None:
        self.script = client.register_script(SCRIPT)

    def take(
        self,
        *,
        bucket_key: str,
        subject_key: str,
        pin_key: str,
        limits: dict[str, tuple[float, float]],
        forced_tier: str = "",
        cost: int = 1,
        hot_above: float,
        regular_below: float,
        hold_seconds: float,
        window_seconds: float,
    ) -> Any:
        """Spend ``cost`` tokens if the bucket holds them. ``limits`` maps tier to (capacity, rate).

        Returns a ``BucketResult``; on a bucket built over an asyncio client, an awaitable of one
        (``await bucket.take(...)``), so both kinds of caller share the script and its arguments.
        """
        call = {
            "bucket_key": bucket_key,
            "subject_key": subject_key,
            "pin_key": pin_key,
            "limits": limits,
            "forced_tier": forced_tier,
            "cost": cost,
            "hot_above": hot_above,
            "regular_below": regular_below,
            "hold_seconds": hold_seconds,
            "window_seconds": window_seconds,
        }
        raw = self.script(keys=_keys(call), args=_args(call))
        if inspect.isawaitable(raw):
            return _awaited_result(raw)
        return _result(raw)

    def take_many(self, client: redis.Redis, calls: Sequence[dict[str, Any]]) -> list[BucketResult]:
        """``take`` for many subjects in one round trip (a pipeline of the same script); sync only."""
        with client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipeline_script(pipe, self.script, keys=_keys(call), args=_args(call))
            return [_result(raw) for raw in pipe.execute()]


def _keys(call: dict[str, Any]) -> list[str]:
    return [call["bucket_key"], call["subject_key"], call["pin_key"]]


def _args(call: dict[str, Any]) -> list[EncodableT]:
    args: list[EncodableT] = [
        call.get("cost", 1),
        call.get("forced_tier", ""),
        call["hot_above"],
        call["regular_below"],
        call["hold_seconds"],
        call["window_seconds"],
    ]
    for tier in TIERS:
        args.extend(call["limits"][tier])
    return args


async def _awaited_result(raw: Awaitable[list[Any]]) -> BucketResult:
    return _result(await raw)


def _result(raw: list[Any]) -> BucketResult:
    allowed, tokens, retry, reset, tier, rate, capacity = raw
    return BucketResult(
        allowed=bool(allowed),
        limit=int(float(capacity)),
        remaining=int(float(tokens)),
        retry_after=float(retry),
        reset_after=float(reset),
        tier=tier.decode() if isinstance(tier, bytes) else tier,
        recent_rate=float(rate),
    )


# A fixed one-second window per key, on the Redis server's clock: KEYS[1] is the window's prefix,
# ARGV[1] the limit. Returns false when admitted, else the seconds until the next window opens.
WINDOW_SCRIPT = """
local now = redis.call('TIME')
local key = KEYS[1] .. ':' .. now[1]
local used = redis.call('INCR', key)
if used == 1 then redis.call('EXPIRE', key, 2) end
if used > tonumber(ARGV[1]) then return tostring(1 - tonumber(now[2]) / 1000000) end
return false
"""


def window_take(client: redis.Redis, *, key: str, limit: int) -> float | None:
    """One event in ``key``'s current second: ``None`` if within ``limit``, else seconds to wait."""
    wait = client.eval(WINDOW_SCRIPT, 1, key, limit)
    return None if wait is None else float(wait)


async def window_take_async(client: aioredis.Redis, *, key: str, limit: int) -> float | None:
    """``window_take`` over an asyncio client, by SHA (EVALSHA, loaded on first use)."""
    wait = await client.register_script(WINDOW_SCRIPT)(keys=[key], args=[limit])
    return None if wait is None else float(wait)
