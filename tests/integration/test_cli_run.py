"""`thinkroute` as a user runs it: `run` on the embedded stack started and stopped by the command itself,
the job commands against the test broker and Redis, and how each failure ends (one line, its exit code)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.procs import settings_env
from tests.helpers import ROOT, cache_dir
from workers.local.services import free_port
from workers.settings import Settings

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "loadgen" / "samples" / "prompts_20.jsonl"


def thinkroute(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
        env["THINKROUTE_CACHE_DIR"] = str(cache_dir())
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def embedded_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    return env | {"THINKROUTE_CACHE_DIR": str(cache_dir())} | extra


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: ")
    return lines[0]


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


def test_run_exits_3_with_one_line_when_an_embedded_worker_dies(artifact: Path) -> None:
    # the inference worker exits (os._exit(137), like a SIGKILL) at its first LLM answer
    proc = thinkroute(
        "run", str(SAMPLE), "--json", "--time-scale", "0", env=embedded_env(THINKROUTE_CRASH_POINTS="after_llm=1")
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    line = one_error_line(proc)
    assert "embedded inference-0 exited with code 137" in line
    m = re.search(r"\(log: (.+)\)$", line)
    assert m, line
    log = Path(m.group(1))
    try:
        assert "crash point after_llm reached" in log.read_text()  # the log it names was kept
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)


def test_run_exits_1_with_one_line_when_the_job_times_out(artifact: Path) -> None:
    # replay latency x1000: no answer comes within the second the job is given
    proc = thinkroute("run", str(SAMPLE), "--json", "--time-scale", "1000", "--timeout", "1", env=embedded_env())
    assert proc.returncode == 1
    assert proc.stdout == ""
    line = one_error_line(proc)
    assert re.fullmatch(r"error: job job-[0-9a-f]{12}: 0/20 done after 1s \(timeout\)", line), line


def test_run_exits_1_when_a_request_fails(artifact: Path, tmp_path: Path) -> None:
    batch = tmp_path / "unknown-model.jsonl"
    body = {"model": "no-such/model", "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 16}
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": body}
    batch.write_text(json.dumps(line) + "\n")
    out = tmp_path / "results.jsonl"
    proc = thinkroute("run", str(batch), "--json", "--time-scale", "0", "-o", str(out), env=embedded_env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # the summary is printed all the same
    assert (summary["total"], summary["completed"], summary["failed"]) == (1, 0, 1)
    assert one_error_line(proc) == f"error: job {summary['job_id']}: 1 of 1 requests failed"
    [result] = [json.loads(x) for x in out.read_text().splitlines()]
    # OpenAI's batch output for an HTTP error: the backend's response, no `error`
    assert result["custom_id"] == "r1" and result["error"] is None
    assert result["response"]["status_code"] == 404
    assert result["response"]["body"]["error"]["code"] == "model_not_found"


def test_submit_status_results_print_one_json_value(settings: Settings, tmp_path: Path) -> None:
    env = settings_env(settings)
    submitted = thinkroute("submit", str(SAMPLE), "--json", env=env, timeout=120)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    sub = json.loads(submitted.stdout)
    assert set(sub) == {"job_id", "total"} and sub["total"] == 20 and sub["job_id"].startswith("job-")
    status = thinkroute("status", sub["job_id"], "--json", env=env, timeout=60)
    assert status.returncode == 0, status.stderr[-2000:]
    summary = json.loads(status.stdout)  # no workers run here: all pending
    assert (summary["job_id"], summary["total"], summary["pending"]) == (sub["job_id"], 20, 20)
    out = tmp_path / "results.jsonl"
    results = thinkroute("results", sub["job_id"], "-o", str(out), "--json", env=env, timeout=60)
    assert results.returncode == 0, results.stderr[-2000:]
    assert json.loads(results.stdout) == {"path": str(out), "lines": 0}
    assert out.read_text() == ""
    missing = thinkroute("status", "job-nope", "--json", env=env, timeout=60)
    assert missing.returncode == 2 and missing.stdout == ""
    assert one_error_line(missing) == "error: no job 'job-nope' in Redis"


def test_broker_or_redis_away_exits_3_naming_the_address() -> None:
    broker, redis = free_port(), free_port()  # nothing listens on either
    env = embedded_env(
        THINKROUTE_KAFKA_BOOTSTRAP=f"127.0.0.1:{broker}", THINKROUTE_REDIS_URL=f"redis://:s3cret@127.0.0.1:{redis}/0"
    )
    proc = thinkroute("submit", str(SAMPLE), env=env, timeout=120)
    assert proc.returncode == 3 and proc.stdout == ""
    assert one_error_line(proc).startswith(f"error: broker unreachable at 127.0.0.1:{broker}: ")
    proc = thinkroute("status", "job-x", env=env, timeout=120)
    assert proc.returncode == 3 and proc.stdout == ""
    line = one_error_line(proc)
    assert line.startswith(f"error: Redis unreachable at 127.0.0.1:{redis}/0: ") and "s3cret" not in line


async def test_stack_up_prints_its_env_as_one_json_value_and_stops_on_ctrl_c(artifact: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers",
        "stack",
        "up",
        "--json",
        "--time-scale",
        "0",
        env=embedded_env(),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        env = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        assert {"THINKROUTE_KAFKA_BOOTSTRAP", "THINKROUTE_REDIS_URL", "THINKROUTE_LLM_BASE_URL"} <= set(env)
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and rest == b""  # Ctrl-C is how a foreground stack ends: a clean stop
