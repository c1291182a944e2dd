"""CPU and time of the two multi-row writes per comment: the group commit and the sequencer's batch.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/chorus_bench REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/sequencer.py [--batch 200] [--rounds 20]

In one process, on a real PostgreSQL (migrated here) and Redis, for batches of ``--batch``:
``comments_accept_batch`` (a node's group commit of that many posts) and ``comments_publish_batch``
(one sequencer transaction publishing them, its Redis pipeline included). Two variants, interleaved
round by round in the same run:

- **orm**: the rows written by Django's ``bulk_create`` and ``update(Case(When ...))``, as before
  ``project/bulk_sql.py`` (forced by making ``bulk_sql.supported()`` answer False);
- **bulk_sql**: the rows as one JSON document per statement (what runs on PostgreSQL).

Reported per comment: wall time and this process's CPU time (the database's own work is in the
wall time, not the CPU), medians over the rounds, and the candidate's ratio to the baseline.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("CHORUS_REDIS_PREFIX", "chorus-bench-sequencer")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from comments.services import AcceptRequest, comments_accept_batch, comments_publish_batch  # noqa: E402
from project import bulk_sql  # noqa: E402
from realtime.models import Stream  # noqa: E402

VARIANTS = ("orm", "bulk_sql")


def _round(stream: Stream, authors: list[int], batch: int, variant: str) -> dict[str, tuple[float, float]]:
    """One batch accepted, then published; (wall, cpu) seconds per comment of each."""
    supported = bulk_sql.supported
    if variant == "orm":
        bulk_sql.supported = lambda: False  # the baseline: the ORM's own writes
    try:
        requests = [
            AcceptRequest(
                stream_id=stream.id,
                slug=stream.slug,
                author_id=authors[i % len(authors)],
                idempotency_key=uuid.uuid4().hex,
                body=f"comment {i} of a live event, a sentence or two long as most are",
            )
            for i in range(batch)
        ]
        result: dict[str, tuple[float, float]] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        comments_accept_batch(requests=requests)
        result["accept"] = ((time.perf_counter() - wall) / batch, (time.process_time() - cpu) / batch)
        wall, cpu = time.perf_counter(), time.process_time()
        published = comments_publish_batch(stream_id=stream.id, limit=batch)
        result["publish"] = ((time.perf_counter() - wall) / batch, (time.process_time() - cpu) / batch)
        assert published == batch, (published, batch)
        return result
    finally:
        bulk_sql.supported = supported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if not bulk_sql.supported():
        sys.exit("bench/sequencer.py measures the PostgreSQL path: set DATABASE_URL to a PostgreSQL database")
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "scripts" / "ensure_database.py")], check=True)
    call_command("migrate", verbosity=0)
    users = get_user_model()
    authors = [users.objects.get_or_create(username=f"bench-seq-{i}")[0].pk for i in range(50)]
    stream = Stream.objects.create(slug=f"bench-seq-{uuid.uuid4().hex[:8]}", title="sequencer bench")
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for variant in VARIANTS:  # warm up both: connections, statement caches, imports
        _round(stream, authors, args.batch, variant)
    for _ in range(args.rounds):
        for variant in VARIANTS:
            for stage, value in _round(stream, authors, args.batch, variant).items():
                samples.setdefault((stage, variant), []).append(value)

    print(f"batches of {args.batch}, {args.rounds} rounds, medians per comment (µs)")
    print(f"{'stage':<9}{'variant':<10}{'wall':>9}{'cpu':>9}{'wall ratio':>12}{'cpu ratio':>11}")
    for stage in ("accept", "publish"):
        base_wall = statistics.median(w for w, _ in samples[(stage, "orm")])
        base_cpu = statistics.median(c for _, c in samples[(stage, "orm")])
        for variant in VARIANTS:
            wall = statistics.median(w for w, _ in samples[(stage, variant)])
            cpu = statistics.median(c for _, c in samples[(stage, variant)])
            print(
                f"{stage:<9}{variant:<10}{wall * 1e6:>9.0f}{cpu * 1e6:>9.0f}"
                f"{wall / base_wall:>12.2f}{cpu / base_cpu:>11.2f}"
            )


if __name__ == "__main__":
    main()
