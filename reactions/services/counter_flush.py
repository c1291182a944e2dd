"""Tap counters between Redis and PostgreSQL: the flush (Celery beat) and reconciliation.

Both write PostgreSQL with ``count = GREATEST(count, new)`` per (stream, kind, replica), the
PN-counter merge: a flush that is retried, delivered twice, runs with stale data or races another
flusher can only confirm values, never add them twice. Rows are written in a fixed order, so two
flushers of one stream take row locks in the same order and cannot deadlock.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from reactions.crdt import PNCounter
from reactions.models import TapCounter
from reactions.redis_counters import (
    CounterState,
    counter_entry_raise,
    counter_state_read,
    counts_of,
    dirty_key,
    dirty_keys,
    redis_client,
    shard_count,
    stream_id_of_taps_key,
    taps_key,
    taps_key_pattern,
)
from reactions.services.taps import reaction_counts_publish
from realtime.models import Stream

logger = logging.getLogger(__name__)

FLUSH_BATCH = 200


def counter_state_merge_into_db(*, stream_id: int, state: CounterState) -> int:
    """Merge a counter state into PostgreSQL (per-replica max); returns the rows it raised."""
    rows = sorted(
        (kind, replica, count) for kind, counter in state.items() for replica, count in counter.p.items() if count
    )
    if not rows:
        return 0
    now = timezone.now()
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params: list[int | str | datetime] = []
    for kind, replica, count in rows:
        params += [stream_id, kind, replica, count, now]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO reactions_tapcounter (stream_id, kind, replica, count, updated_at)
            VALUES {values}
            ON CONFLICT (stream_id, kind, replica) DO UPDATE
               SET count = EXCLUDED.count, updated_at = EXCLUDED.updated_at
             WHERE reactions_tapcounter.count < EXCLUDED.count
            """,
            params,
        )
        return cursor.rowcount


def counter_state_from_db(*, stream_id: int) -> CounterState:
    return counter_states_from_db(stream_ids=[stream_id]).get(stream_id, {})


def counter_states_from_db(*, stream_ids: list[int]) -> dict[int, CounterState]:
    """The PostgreSQL copies of the streams' counters, in one query."""
    entries: dict[int, dict[str, dict[str, int]]] = {}
    rows = TapCounter.objects.filter(stream_id__in=stream_ids).values_list("stream_id", "kind", "replica", "count")
    for stream_id, kind, replica, count in rows:
        entries.setdefault(stream_id, {}).setdefault(kind, {})[replica] = count
    return {sid: {kind: PNCounter(p=p) for kind, p in kinds.items()} for sid, kinds in entries.items()}


def counter_state_raise_in_redis(*, stream_id: int, in_redis: CounterState, in_db: CounterState) -> int:
    """Raise every Redis entry that PostgreSQL holds higher (or Redis lost) to the PostgreSQL value;
    returns how many entries it raised (none when ``in_redis`` was merely older than PostgreSQL).

    Only entries of earlier lives can be behind (a process counts on in the hash's current life,
    and PostgreSQL only ever gets values read from Redis), so this restores what Redis lost and
    never overwrites a tap. ``in_redis`` may be stale: the raise itself never lowers an entry.
    """
    raised = 0
    for kind, counter in in_db.items():
        redis_entries = in_redis.get(kind, PNCounter()).p
        for replica, count in counter.p.items():
            if count > redis_entries.get(replica, 0):
                raised += counter_entry_raise(stream_id=stream_id, kind=kind, crdt_replica=replica, count=count) > 0
    return raised


def reaction_taps_flush(*, batch: int = FLUSH_BATCH) -> int:
    """Flush every stream marked dirty; returns how many streams were flushed. Safe to run twice.

    A stream is unmarked before it is read, so a tap during the flush marks it again. If the
    write fails the streams are marked again; if the process dies in between, the next tap or
    ``manage.py reconcile_counters`` brings PostgreSQL up to date.

    The merge goes both ways: entries PostgreSQL holds and Redis lost (a Redis restart) are written
    back, and the restored counts broadcast, so a stream that is tapped again shows its whole count
    again within one flush. One more query per batch.
    """
    client = redis_client()
    flushed = 0
    while True:
        with client.pipeline(transaction=False) as pipe:
            for key in dirty_keys():
                pipe.spop(key, batch)
            popped = pipe.execute()
        stream_ids = sorted({int(sid) for members in popped for sid in members or ()})
        if not stream_ids:
            return flushed
        try:
            existing = set(Stream.objects.filter(id__in=stream_ids).values_list("id", flat=True))
            in_redis: dict[int, CounterState] = {}
            for stream_id in stream_ids:
                if stream_id in existing:
                    in_redis[stream_id] = counter_state_read(stream_id=stream_id)
                    counter_state_merge_into_db(stream_id=stream_id, state=in_redis[stream_id])
                    flushed += 1
            _restore_lost_entries(in_redis=in_redis)
        except Exception:
            with client.pipeline(transaction=False) as pipe:
                for stream_id in stream_ids:
                    pipe.sadd(dirty_key(stream_id), stream_id)
                pipe.execute()
            raise


def _restore_lost_entries(*, in_redis: dict[int, CounterState]) -> None:
    in_db = counter_states_from_db(stream_ids=list(in_redis))
    for stream_id, state in in_redis.items():
        if counter_state_raise_in_redis(stream_id=stream_id, in_redis=state, in_db=in_db.get(stream_id, {})):
            logger.info("tap counters of stream %s restored from PostgreSQL (Redis had lost them)", stream_id)
            reaction_counts_publish(stream_id=stream_id)


@dataclass(frozen=True)
class Drift:
    stream_id: int
    kind: str
    redis: int
    db: int

    @property
    def direction(self) -> str:
        return "redis ahead (not flushed yet)" if self.redis > self.db else "database ahead (Redis lost taps)"


def _stream_ids_in_redis() -> set[int]:
    keys = redis_client().scan_iter(match=taps_key_pattern(), count=1000)
    return {stream_id_of_taps_key(key.decode()) for key in keys}


def reaction_counters_reconcile(*, repair: bool) -> list[Drift]:
    """Compare every stream's counts in Redis and PostgreSQL; with ``repair``, merge both ways.

    Repair raises each lower copy of an entry to the higher one (never lowers anything), so it is
    safe while taps and flushes continue, and broadcasts the counts of every stream it raised in
    Redis. Returns the drift found before repairing.
    """
    db_ids = set(TapCounter.objects.values_list("stream_id", flat=True).distinct())
    redis_ids = _stream_ids_in_redis()
    live_ids = set(Stream.objects.filter(id__in=redis_ids).values_list("id", flat=True))
    if repair:
        # Counters of deleted streams: nothing will ever read or flush them again.
        for orphan in redis_ids - live_ids:
            redis_client().delete(*(taps_key(orphan, shard) for shard in range(shard_count())))  # one slot
    drifts: list[Drift] = []
    for stream_id in sorted(db_ids | live_ids):
        in_redis = counter_state_read(stream_id=stream_id)
        in_db = counter_state_from_db(stream_id=stream_id)
        redis_counts, db_counts = counts_of(in_redis), counts_of(in_db)
        for kind in sorted(set(redis_counts) | set(db_counts)):
            if redis_counts.get(kind, 0) != db_counts.get(kind, 0):
                drifts.append(Drift(stream_id, kind, redis_counts.get(kind, 0), db_counts.get(kind, 0)))
        if not repair:
            continue
        counter_state_merge_into_db(stream_id=stream_id, state=in_redis)
        if counter_state_raise_in_redis(stream_id=stream_id, in_redis=in_redis, in_db=in_db):
            reaction_counts_publish(stream_id=stream_id)
    if drifts:
        logger.info("reconcile_counters found %d drifting counts", len(drifts))
    return drifts
