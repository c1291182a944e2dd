"""Live taps: exact counts in Redis and PostgreSQL under duplicate and concurrent flushes."""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.management import call_command

from reactions.hot import stream_hot_pin
from reactions.models import TapCounter
from reactions.redis_counters import counter_state_read, counts_of, redis_client, taps_key
from reactions.services.counter_flush import counter_state_from_db, reaction_taps_flush
from reactions.tasks import reaction_taps_flush_task
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import UserFactory
from tests.support.processes import ManagedProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSES, TAPS = 4, 5000


def _total(counts: dict[str, int]) -> int:
    return sum(counts.values())


def test_four_processes_tap_exactly_despite_duplicate_and_concurrent_flushes(stream: Stream) -> None:
    """4 x 5,000 taps with duplicate, stale and concurrent flushes: exactly 20,000 in Redis and PostgreSQL."""
    # given: four real processes tapping, each re-delivering its state, while this process flushes too
    users = [UserFactory.create() for _ in range(PROCESSES)]
    env = {"CHORUS_REACTION_TAPS_PER_SECOND": "1000000", "CHORUS_HOT_STREAM_THRESHOLD": "1000000000"}
    procs = [
        ManagedProcess(
            f"tapper-{i}",
            [sys.executable, "-m", "tests.reactions.tap_process", str(stream.id), str(u.pk), str(TAPS), "500"],
            env=env,
        ).start()
        for i, u in enumerate(users)
    ]
    stop = threading.Event()

    def flush_loop() -> None:
        while not stop.is_set():
            reaction_taps_flush()

    flushers = [threading.Thread(target=flush_loop) for _ in range(2)]
    for flusher in flushers:
        flusher.start()
    try:
        # when: half-way through, the stream is pinned hot, so later taps spread over shard keys
        wait_until(
            lambda: _total(counts_of(counter_state_read(stream_id=stream.id))) >= PROCESSES * TAPS // 2,
            timeout=60,
            what="half of the taps",
        )
        stream_hot_pin(stream_id=stream.id, mode="hot")
        for proc in procs:
            assert proc.proc is not None
            assert proc.proc.wait(timeout=90) == 0, proc.log_text()[-2000:]
    finally:
        stop.set()
        for flusher in flushers:
            flusher.join(timeout=30)
        stream_hot_pin(stream_id=stream.id, mode=None)
        for proc in procs:
            proc.stop()
    reaction_taps_flush()
    reaction_taps_flush()  # a retried flush changes nothing

    # then
    redis_counts = counts_of(counter_state_read(stream_id=stream.id))
    db_counts = counts_of(counter_state_from_db(stream_id=stream.id))
    assert _total(redis_counts) == PROCESSES * TAPS
    assert db_counts == redis_counts
    assert db_counts["fire"] == PROCESSES * (TAPS // 3)
    assert any(redis_client().exists(taps_key(stream.id, shard)) for shard in range(1, 8)), "hot shards used"


def test_taps_over_http_on_two_nodes_are_counted_and_flushed_by_the_worker(live: Stack, stream: Stream) -> None:
    """Taps on both nodes land in Redis; the Celery flush task brings PostgreSQL to the same total."""
    users = [UserFactory.create() for _ in range(6)]
    from rest_framework.authtoken.models import Token

    tokens = [Token.objects.create(user=u).key for u in users]

    def tap(i: int) -> int:
        with httpx.Client(timeout=15) as client:
            node = live.nodes[i % 2].http
            headers = {"Authorization": f"Token {tokens[i % len(tokens)]}"}
            return client.post(
                f"{node}/api/v1/streams/{stream.slug}/reactions", json={"kind": "heart"}, headers=headers
            ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(tap, range(60)))
    assert statuses == [202] * 60  # 10 taps per user: under the per-user limit
    accepted = 60
    assert _total(counts_of(counter_state_read(stream_id=stream.id))) == accepted

    reaction_taps_flush_task.delay()
    wait_until(
        lambda: _total(counts_of(counter_state_from_db(stream_id=stream.id))) == accepted,
        timeout=30,
        what="the worker's flush",
    )


def test_bad_taps_are_refused_with_the_field_named(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Unknown kind is a 400 naming 'kind'; anonymous is 401; over the limit is 429 with Retry-After."""
    url = f"{live.nodes[0].http}/api/v1/streams/{stream.slug}/reactions"
    bad = http.post(url, json={"kind": "thumbsdown"}, headers=api_user.headers)
    assert bad.status_code == 400 and "kind" in bad.json()["fields"]
    assert http.post(url, json={}, headers=api_user.headers).json()["fields"].keys() == {"kind"}
    assert http.post(url, json={"kind": "heart"}).status_code == 401
    assert (
        http.post(
            f"{live.nodes[0].http}/api/v1/streams/nope/reactions", json={"kind": "heart"}, headers=api_user.headers
        ).status_code
        == 404
    )
    responses = [http.post(url, json={"kind": "heart"}, headers=api_user.headers) for _ in range(45)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and limited[0].json()["code"] == "rate_limited" and "Retry-After" in limited[0].headers
    assert _total(counts_of(counter_state_read(stream_id=stream.id))) == 45 - len(limited)


def test_reconcile_counters_reports_and_repairs_drift_both_ways(stream: Stream) -> None:
    """Lost Redis data is restored from PostgreSQL and unflushed taps are written to PostgreSQL."""
    from io import StringIO

    from reactions.services.taps import reaction_tap

    user = UserFactory.create()
    for _ in range(7):
        reaction_tap(stream_id=stream.id, user_id=user.pk, kind="clap")
    reaction_taps_flush()
    redis_client().delete(*(taps_key(stream.id, shard) for shard in range(8)))  # Redis lost the counters
    out = StringIO()
    call_command("reconcile_counters", stdout=out)
    assert "database ahead" in out.getvalue() and _total(counts_of(counter_state_read(stream_id=stream.id))) == 0

    call_command("reconcile_counters", "--repair", stdout=StringIO())
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"clap": 7}

    TapCounter.objects.filter(stream=stream).update(count=2)  # a flush that never happened
    out = StringIO()
    call_command("reconcile_counters", "--repair", stdout=out)
    assert "redis ahead" in out.getvalue()
    assert counts_of(counter_state_from_db(stream_id=stream.id)) == {"clap": 7}
    out = StringIO()
    call_command("reconcile_counters", stdout=out)
    assert "no drift" in out.getvalue()
