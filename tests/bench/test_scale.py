"""The scale benchmark (bench/scale.py) runs end to end, tiny: both topologies, a rolling restart, the report."""

import json
import os
import subprocess
import sys
import uuid

import dj_database_url

from tests.support.processes import ARTIFACTS, ROOT


def test_scale_benchmark_quick_run_loses_nothing_on_either_topology() -> None:
    """``bench/scale.py --quick`` with tiny numbers: 30 subscribers on 3 streams behind HAProxy,
    6 comments/s, every node drained and restarted, on a Redis Cluster and on one Redis; the run
    exits 0 and its report says every subscriber was handed over and got every event once, in order."""
    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    server = f"postgres://{config['USER'] or 'postgres'}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 5432}"
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / f"bench-scale-{uuid.uuid4().hex[:8]}.json"
    argv = [
        sys.executable, "bench/scale.py", "--quick", "--subscribers", "30", "--streams", "3", "--rate", "6",
        "--before", "1", "--after", "1", "--drain-seconds", "1", "--client-processes", "1", "--catch-up", "30",
        "--pg", server, "--db-prefix", f"{config['NAME']}_scale", "--json", str(report),
    ]  # fmt: skip

    # The benchmark runs the stacks in their default configuration, whose secret key is the
    # checkout's own file (as `make bench` and `make run` create it); a fresh clone has none yet.
    without_key = {name: value for name, value in os.environ.items() if name != "DJANGO_SECRET_KEY"}
    subprocess.run(["scripts/secret_key.sh"], cwd=ROOT, env=without_key, check=True, capture_output=True, timeout=30)

    # when
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)

    # then
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results = {r["topology"]: r for r in json.loads(report.read_text())["results"]}
    assert set(results) == {"cluster", "single"}
    for topology, result in results.items():
        assert result["restart_ok"], topology
        assert result["subscribers"] == 30 and result["clients_handed_over"] == 30, (topology, result)
        assert result["events_in_log"] > 0 and result["accepted_unpublished"] == 0, (topology, result)
        assert result["deliveries"] == 10 * result["events_in_log"], (topology, result)  # 10 per stream
        assert (result["lost"], result["duplicates"], result["reordered"]) == (0, 0, 0), (topology, result)
        assert result["handover_max_ms"] is not None and result["redis"], (topology, result)
    assert [r["role"] for r in results["cluster"]["redis"]].count("master") == 3
    assert len(results["single"]["redis"]) == 1
    report.unlink()
