"""`benchmarks/config_scale` must not rot (issue #12): a small run of the real command (a server
subprocess, 200 volumes through the API) completes, prints its table and writes sane JSON. Timing
goals are the benchmark's to report (at N = 10,000), not asserted here: the machine is shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.config_scale_lib.bench import CALLS, RESOURCES, goals, percentile

from .reliability import REPO

SMOKE_N = 200


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([], 50) == 0.0


def test_goals_fail_when_the_cost_per_call_grows() -> None:
    flat = {"n": 2000, "blocks": [{"p50_ms": 4.0, "p99_ms": 9.0}, {"p50_ms": 5.0, "p99_ms": 12.0}],
            "restart_s": 3.0, "rss_mib": 100.0, "restart_rss_mib": 90.0, "descriptors": 2050,
            "restart_descriptors": 2040}
    assert all(goals(flat).values())
    growing = {**flat, "blocks": [{"p50_ms": 4.0, "p99_ms": 9.0}, {"p50_ms": 9.0, "p99_ms": 30.0}]}
    assert not goals(growing)["p50 grows < 2x"]
    assert not goals({**flat, "descriptors": 2101})["descriptors <= N + 100"]


def test_a_small_run_completes_with_sane_numbers(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "config_scale"), "-n", str(SMOKE_N),
                           "--json", str(out), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "restart to ready" in done.stdout and "GET ?limit=0" in done.stdout
    r = json.loads(out.read_text())
    assert r["n"] == SMOKE_N
    assert [b["volumes"] for b in r["blocks"]] == [SMOKE_N]
    assert r["blocks"][0]["calls"] == 4 * SMOKE_N
    assert set(r["per_call"]) == set(CALLS)
    assert all(0 < s["p50_ms"] <= s["p99_ms"] for s in r["per_call"].values())
    lists = r["list_limit0"]
    assert set(lists) == set(RESOURCES)
    # the demo's target, extent, group and mapping, plus the volumes
    for name in ("target", "extent", "targetgroup", "targettoextent"):
        assert lists[name]["objects"] == SMOKE_N + 1, name
    assert r["put_ms"] > 0 and r["delete_ms"] > 0
    assert r["targets_after_restart"] == SMOKE_N  # one volume's target was deleted at N
    # one descriptor per extent at most, plus the server's own few (issue #12)
    assert SMOKE_N <= r["descriptors"] <= SMOKE_N + 100
    assert SMOKE_N - 1 <= r["restart_descriptors"] <= SMOKE_N + 100
    assert 0 < r["rss_mib"] < 4096 and r["restart_s"] > 0
    assert r["discovery_s"] > 0 and r["discovered_targets"] == SMOKE_N  # the demo target and N - 1
    assert r["iscsi_ls_problem"] is not None or r["iscsi_ls_s"] > 0
    assert set(r["goals"]) == set(goals(r))
