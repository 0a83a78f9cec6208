"""`thinkroute run` as a user runs it: the embedded stack started and stopped by the command itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, cache_dir

pytestmark = pytest.mark.integration


def thinkroute(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    env["THINKROUTE_CACHE_DIR"] = str(cache_dir())
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def test_run_on_the_embedded_stack(artifact: Path, tmp_path: Path) -> None:
    sample = ROOT / "loadgen" / "samples" / "prompts_20.jsonl"
    out = tmp_path / "results.jsonl"
    proc = thinkroute("run", str(sample), "--output", str(out), "--json", "--time-scale", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert {"job_id", "total", "completed", "failed", "routes", "tokens", "latency_s", "wall_s"} <= set(summary)
    assert (summary["total"], summary["completed"], summary["failed"]) == (20, 20, 0)
    assert summary["routes"]["reasoning"] + summary["routes"]["direct"] == 20
    assert set(summary["latency_s"]) >= {"p50", "p95", "p99"}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [json.loads(x)["id"] for x in sample.read_text().splitlines() if x.strip()]
    assert [x["custom_id"] for x in lines] == ids
    assert sum(x["route"]["use_reasoning"] for x in lines) == summary["routes"]["reasoning"]
    completion = sum(x["response"]["body"]["usage"]["completion_tokens"] for x in lines)
    assert completion == summary["tokens"]["completion"]


def test_run_rejects_a_bad_file_with_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "fine"}\n{oops\n{"id": "a", "prompt": "again"}\n')
    proc = thinkroute("run", str(bad), "--json")
    assert proc.returncode == 2
    assert "line 2: not valid JSON" in proc.stderr
    assert "line 3: duplicate id 'a'" in proc.stderr
    assert "nothing submitted" in proc.stderr
