"""`python -m loadgen scale` in a tiny configuration (two sizes, 150 then 300 prompts): the JSON report has every
figure for each size, both clients answered every prompt, ThinkRoute's output was checked (one line per request,
input order), and the ratios and capacities follow from the measured numbers. No timing thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, cache_dir

pytestmark = pytest.mark.integration
SIZES = (150, 300)
PROCESSES = {"cli", "broker", "redis", "replay", "router-0", "inference-0"}


def test_scale_bench_reports_every_figure(artifact: Path) -> None:
    argv = [sys.executable, "-m", "loadgen", "scale", "--json", "--small", str(SIZES[0]), "--prompts", str(SIZES[1])]
    argv += ["--timeout-s", "240"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    env["THINKROUTE_CACHE_DIR"] = str(cache_dir())
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)

    assert r["cpu_count"] == os.cpu_count() and r["concurrency"] == 64  # one inference worker, 64 in flight
    assert [row["prompts"] for row in r["sizes"]] == list(SIZES)
    for row in r["sizes"]:
        n, tr, plain = row["prompts"], row["thinkroute"], row["plain"]
        assert (tr["completed"], tr["failed"]) == (n, 0)
        assert (plain["completed"], plain["failed"]) == (n, 0)
        assert set(tr["peak_rss_mb"]) == PROCESSES and all(v > 0 for v in tr["peak_rss_mb"].values())
        assert plain["peak_rss_mb"]["plain"] > 0
        assert tr["per_s"] == pytest.approx(n / tr["wall_s"], rel=0.01)
        assert row["ratio"] == pytest.approx(plain["wall_s"] / tr["wall_s"], rel=0.01)
        assert row["redis_bytes_per_request"] > 0  # each result stays in Redis
    small, large = r["sizes"]
    assert r["cli_rss_ratio"] == pytest.approx(
        large["thinkroute"]["peak_rss_mb"]["cli"] / small["thinkroute"]["peak_rss_mb"]["cli"], rel=0.01
    )
    assert r["bytes_per_request"] == 2 * large["broker_bytes_per_record"] + large["redis_bytes_per_request"]
    assert r["embedded_capacity"] == int(r["budget_gib"] * 1024**3 / max(r["bytes_per_request"], 1))
