"""The per-user limit on live taps, kept in one place so a shared gateway limiter can replace it.

A fixed one-second window counted in Redis on the Redis server's clock (``TIME``), so every node
sees the same window. Returns the seconds to wait when the limit is reached.
"""

from django.conf import settings

from reactions.counters import _prefix, async_redis_client, redis_client

TAP_LIMIT_SCRIPT = """
local now = redis.call('TIME')
local key = KEYS[1] .. ':' .. now[1]
local used = redis.call('INCR', key)
if used == 1 then redis.call('EXPIRE', key, 2) end
if used > tonumber(ARGV[1]) then return tostring(1 - tonumber(now[2]) / 1000000) end
return false
"""


def _limit_key(user_id: int) -> str:
    # The user's hash tag: the per-second key the script derives from it stays in its slot.
    return f"{_prefix()}:limit:{{u{user_id}}}"


def tap_rate_check(*, user_id: int) -> float | None:
    """``None`` if this tap is allowed, else the seconds until the user's window reopens."""
    wait = redis_client().eval(TAP_LIMIT_SCRIPT, 1, _limit_key(user_id), settings.CHORUS_REACTION_TAPS_PER_SECOND)
    return None if wait is None else float(wait)


async def tap_rate_check_async(*, user_id: int) -> float | None:
    # By SHA (EVALSHA, loaded on first use): a tap then sends no script text.
    script = async_redis_client().register_script(TAP_LIMIT_SCRIPT)
    wait = await script(keys=[_limit_key(user_id)], args=[settings.CHORUS_REACTION_TAPS_PER_SECOND])
    return None if wait is None else float(wait)
