"""bench/sequencer.py runs from a checkout and measures both variants on real PostgreSQL and Redis."""

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sequencer_bench_reports_both_variants_of_both_writes() -> None:
    result = subprocess.run(
        [sys.executable, "bench/sequencer.py", "--batch", "20", "--rounds", "2"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["accept"], ["publish"])]
    assert [(row[0], row[1]) for row in rows] == [
        ("accept", "orm"), ("accept", "bulk_sql"), ("publish", "orm"), ("publish", "bulk_sql"),
    ]  # fmt: skip
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
