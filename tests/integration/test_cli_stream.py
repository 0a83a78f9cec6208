"""`thinkroute run` on a job of a few thousand prompts through the real embedded stack (Tansu, Valkey, router,
inference worker, replay server at time scale 0): the file is streamed (``workers.submit.stream``) and the output
is written from Redis's order list, so every request has exactly one line, in the input file's order (ids that
do not sort the way the file runs); then ``--skip-done`` with a third of the answers kept runs only the rest and
merges them into the same order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli_run import thinkroute

pytestmark = pytest.mark.integration
N = 3000


def ids() -> list[str]:
    return [f"p-{(i * 7919) % N:05d}" for i in range(N)]  # a permutation: input order is not id order


def test_a_few_thousand_prompts_come_back_once_each_in_input_order(artifact: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    order = ids()
    assert len(set(order)) == N and order != sorted(order)
    lines_in = (json.dumps({"id": cid, "prompt": f"What is {i} + {i}?"}) + "\n" for i, cid in enumerate(order))
    batch.write_text("".join(lines_in))
    out = tmp_path / "out.jsonl"
    proc = thinkroute("run", str(batch), "-o", str(out), "--json", "--time-scale", "0", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["total"], summary["completed"], summary["failed"], summary["pending"]) == (N, N, 0, 0)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == order
    assert summary["output"] == {"path": str(out), "lines": N}
    completion = sum(x["response"]["body"]["usage"]["completion_tokens"] for x in lines)
    assert completion == summary["tokens"]["completion"]

    kept = tmp_path / "kept.jsonl"  # the answers of every third request, in another order than the file's
    kept.write_text("".join(json.dumps(x) + "\n" for x in reversed(lines[::3])))
    again = tmp_path / "again.jsonl"
    proc = thinkroute(
        "run", str(batch), "--skip-done", str(kept), "-o", str(again), "--json", "--time-scale", "0", timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rerun = json.loads(proc.stdout)
    assert (rerun["total"], rerun["completed"], rerun["skipped"]) == (N - len(lines[::3]), N - len(lines[::3]), 1000)
    merged = [json.loads(x) for x in again.read_text().splitlines()]
    assert [x["custom_id"] for x in merged] == order
    assert merged[::3] == lines[::3]  # the kept answers byte for byte (as JSON), the others new
    assert all(x["error"] is None for x in merged)
