"""`python -m loadgen bench` in a tiny configuration, against the session broker (``--bootstrap``): the JSON
report has every field, and its numbers are positive and consistent with each other. No timing thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from workers.local.services import Service

pytestmark = pytest.mark.integration
PROMPTS = 120
KEYS = {
    "classifier_per_s",
    "router_per_s",
    "pipeline_per_s",
    "router_ratio",
    "pipeline_ratio",
    "added_latency_ms",
    "prompts",
    "cpu_count",
    "providers",
    "inference_per_s",
    "classifier_batch",
    "router_rss_mb",
    "load",
}


def test_bench_reports_every_figure(artifact: Path, broker: Service) -> None:
    argv = [sys.executable, "-m", "loadgen", "bench", "--json", "--artifact", str(artifact)]
    argv += ["--bootstrap", broker.address, "--prompts", str(PROMPTS), "--batch-sizes", "16,32"]
    argv += ["--sweep-prompts", "32", "--load-s", "2", "--inference-prompts", "64", "--timeout-s", "120"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)

    assert r.keys() >= KEYS
    assert r["prompts"] == PROMPTS
    assert r["cpu_count"] == os.cpu_count()
    assert r["providers"] and all(isinstance(p, str) for p in r["providers"])
    assert r["classifier_batch"] in (16, 32)
    for key in ("classifier_per_s", "router_per_s", "pipeline_per_s", "inference_per_s"):
        assert r[key] > 0, key
    for ratio, per_s in (("router_ratio", "router_per_s"), ("pipeline_ratio", "pipeline_per_s")):
        # the rates are rounded to 0.1/s, the ratios to 0.001
        assert r[ratio] == pytest.approx(r[per_s] / r["classifier_per_s"], rel=0.01, abs=2e-3), ratio

    lat = r["added_latency_ms"]
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert [p["share"] for p in r["load"]] == [0.5, 0.7, 0.8]
    for phase in r["load"]:
        assert phase["prompts"] > 0 and phase["offered_per_s"] > 0 and phase["series"]
        # cores used per process in the phase (the broker is external here, so not measured)
        assert set(phase["cores"]) == {"router", "bench"} and phase["cores"]["router"] > 0
        assert all(s["lag"] >= -1 and s["rss_mb"] > 0 for s in phase["series"])
    assert lat == r["load"][-1]["added_latency_ms"]  # the headline latency is the one at 80% load
    rss = r["router_rss_mb"]
    assert 0 < rss["start"] <= rss["max"] and rss["end"] <= rss["max"]
