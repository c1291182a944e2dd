"""Cost of one rate-limit check, including the Redis round trip, against a bare PING round trip.

    REDIS_URL=redis://127.0.0.1:6379/12 .venv/bin/python bench/ratelimit.py [--quick]

Both are measured in the same run, on the same connection pool, one call at a time (the latency a
request pays, not Redis throughput). The check is ``gateway.services.rate_limit_check``: the Lua
script (refill, spend, tier adaptation) by EVALSHA, the circuit breaker, and the Python around it.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Admit every check, so the common (admitted) path is what is measured.
os.environ["CHORUS_RATE_LIMITS"] = '{"regular": {"comments": [1e9, 1e9]}}'

import django

django.setup()

from project.ratelimit import limiter_redis, rate_limit_check  # noqa: E402


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _measure(call: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):  # warm up: connection, script cache
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 calls each instead of 20,000")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    client = limiter_redis()
    subject = f"bench:{os.getpid()}"

    rounds = []
    for _ in range(3):  # interleaved, so a noisy neighbour hits both alike
        ping = _measure(client.ping, n // 3)
        check = _measure(lambda: rate_limit_check(subject=subject, service="comments"), n // 3)
        rounds.append((ping, check))
    ping = [s for p, _ in rounds for s in p]
    check = [s for _, c in rounds for s in c]
    (ping50, ping99), (check50, check99) = _percentiles(ping), _percentiles(check)
    print(f"calls each: {len(ping)}")
    print(f"{'':24}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}")
    print(f"{'PING round trip':24}{ping50:10.1f}{ping99:10.1f}{statistics.fmean(ping):10.1f}")
    print(f"{'rate_limit_check':24}{check50:10.1f}{check99:10.1f}{statistics.fmean(check):10.1f}")
    print(f"ratio check/PING: p50 {check50 / ping50:.2f}x, p99 {check99 / ping99:.2f}x")
    print(f"target p99 < 1000 us: {'met' if check99 < 1000 else 'MISSED'}")


if __name__ == "__main__":
    main()
