"""`thinkroute run` on the embedded stack, stopped by real signals: every process it started ends within a
bounded time and its directory goes; the first Ctrl-C keeps the answers collected so far and
`--skip-done` finishes the job; after a SIGKILL its children die and the next start removes its directory."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from loadgen.procs import settings_env
from tests.integration.helpers import read_topic
from tests.integration.procs import alive, redis_url_of, stack_of, wait_for, workdir_of
from tests.integration.test_cli_run import SAMPLE, embedded_env, thinkroute
from workers.settings import Settings
from workers.store.jobstore import Store

pytestmark = pytest.mark.integration
EXIT_BOUND_S = 15.0  # signal -> `thinkroute run` gone (the first signal gives workers 3 s)


class Run:
    """`thinkroute run ...` in the background, its output in files."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.stdout = tmp_path / "stdout.txt"
        self.stderr = tmp_path / "stderr.txt"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            argv = [sys.executable, "-m", "workers", "run", *args]
            self.proc = subprocess.Popen(argv, env=embedded_env(), cwd=tmp_path, stdout=out, stderr=err)
        self.stack: dict[int, str] = {}

    def wait_for_job(self, asked: int, done: int = 0) -> str:
        """Once its stack is up, ``asked`` requests reached the LLM server (so the job is submitted) and
        ``done`` are answered: the job id."""
        self.stack = stack_of(self.proc.pid)
        self.workdir = workdir_of(self.stack)
        [replay] = [cmd for cmd in self.stack.values() if "workers.replay.server" in cmd]
        stats = f"http://127.0.0.1:{replay.split('--port ')[1].split()[0]}/stats"
        wait_for(lambda: httpx.get(stats).json()["requests"] >= asked, 120, f"{asked} requests at the LLM")
        return asyncio.run(_job_progress(redis_url_of(self.stack), done))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self) -> int:
        code = self.proc.wait(EXIT_BOUND_S)
        wait_for(lambda: not any(alive(p) for p in self.stack), 10, f"the stack's processes {self.stack} to end")
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def _job_progress(url: str, done: int, timeout: float = 120.0) -> str:
    redis = Redis.from_url(url)
    try:
        store = Store(redis)
        deadline = time.monotonic() + timeout
        while True:
            jobs = await store.recent_jobs(1)
            if jobs:
                totals = await store.totals(jobs[0])
                if totals.completed + totals.failed >= done:
                    return jobs[0]
            assert time.monotonic() < deadline, f"no job with {done} answers within {timeout:.0f}s"
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()


def mixed_batch(path: Path) -> list[str]:
    """Even ids answer at once (one token), odd ones would take hours at --time-scale 100."""
    ids = []
    with open(path, "w") as f:
        for i in range(6):
            body = {"model": "Qwen/Qwen3-30B-A3B", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]}
            body["max_tokens"] = 1 if i % 2 == 0 else 20_000
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
            f.write("\n")
            ids.append(f"r{i}")
    return ids


def test_first_ctrl_c_keeps_the_answers_and_skip_done_finishes_the_job(artifact: Path, tmp_path: Path) -> None:
    batch = tmp_path / "mixed.jsonl"
    ids = mixed_batch(batch)
    out = tmp_path / "out.jsonl"
    run = Run(tmp_path, str(batch), "--time-scale", "100", "-o", str(out))
    try:
        job = run.wait_for_job(asked=6, done=3)
        started = time.monotonic()
        run.signal(signal.SIGINT)
        assert run.wait_exit() == 130
        assert time.monotonic() - started < 8.0  # "within a few seconds": 3 s for the workers, then it writes
    finally:
        run.kill()
    stderr = run.stderr.read_text()
    assert "stopping: waiting up to 3s for 2 workers to finish their requests, Ctrl-C again to force" in stderr
    assert f"wrote 3 results to {out}" in stderr
    assert f"3 requests have no result yet; their custom_ids are in {out}.missing.txt" in stderr
    assert f"to continue: thinkroute run {batch} --skip-done {out}" in stderr
    assert stderr.splitlines()[-1] == f"error: job {job} stopped by SIGINT: 3 requests without a result"
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["r0", "r2", "r4"]
    assert all(x["error"] is None and x["response"]["status_code"] == 200 for x in lines)
    assert (tmp_path / "out.jsonl.missing.txt").read_text().split() == ["r1", "r3", "r5"]
    assert not run.workdir.exists()

    # the rest, at once: the earlier answers are kept, not asked again, and merged in input order
    proc = thinkroute("run", str(batch), "--skip-done", str(out), "--time-scale", "0", "--json", env=embedded_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["total"], summary["completed"], summary["skipped"]) == (3, 3, 3)
    assert summary["output"] == {"path": str(out), "lines": 6}
    merged = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in merged] == ids
    assert merged[0] == lines[0] and merged[2] == lines[1] and merged[4] == lines[2]  # kept as they were
    assert not (tmp_path / "out.jsonl.missing.txt").exists()


@pytest.mark.parametrize(
    "signals", [[signal.SIGTERM], [signal.SIGHUP], [signal.SIGINT, signal.SIGINT]], ids=["term", "hup", "int-int"]
)
def test_every_stop_signal_ends_the_whole_stack(artifact: Path, tmp_path: Path, signals: list[int]) -> None:
    run = Run(tmp_path, str(SAMPLE), "--time-scale", "1000")  # no answer comes: the job runs until stopped
    try:
        job = run.wait_for_job(asked=20)
        run.signal(signals[0])
        for sig in signals[1:]:  # again, while it waits for the workers: they are killed at once
            wait_for(lambda: "stopping:" in run.stderr.read_text(), 10, "the stopping message")
            run.signal(sig)
        assert run.wait_exit() == 130
    finally:
        run.kill()
    assert not run.workdir.exists()
    name = signal.Signals(signals[0]).name
    stderr = run.stderr.read_text()
    assert stderr.splitlines()[-1] == f"error: job {job} stopped by {name}: 20 requests without a result"
    partial = tmp_path / f"results-{job}.partial.jsonl"  # no --output: the results so far go here
    assert partial.read_text() == ""
    assert len((tmp_path / f"{partial.name}.missing.txt").read_text().split()) == 20


def test_sigkill_leaves_no_process_and_the_next_start_removes_its_directory(artifact: Path, tmp_path: Path) -> None:
    run = Run(tmp_path, str(SAMPLE), "--time-scale", "1000")
    try:
        run.wait_for_job(asked=20)
        run.signal(signal.SIGKILL)
        assert run.wait_exit() == -signal.SIGKILL  # its children are gone too (PR_SET_PDEATHSIG)
    finally:
        run.kill()
    assert (run.workdir / "owner").is_file()  # nothing of a SIGKILLed process runs: its directory stays
    proc = thinkroute("run", str(SAMPLE), "--time-scale", "0", "--json", env=embedded_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not run.workdir.exists()  # removed by the next start: its owner is gone


def test_ctrl_c_against_a_configured_kafka_writes_what_is_there_and_leaves_the_job(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with open(tmp_path / "stderr.txt", "wb") as err:
        argv = [sys.executable, "-m", "workers", "run", str(SAMPLE), "-o", str(out)]
        proc = subprocess.Popen(argv, env=settings_env(settings), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    try:  # no workers run here: the job waits; once its 20 prompts are on the topic, Ctrl-C
        assert settings.kafka_bootstrap is not None
        records = asyncio.run(read_topic(settings.kafka_bootstrap, settings.topics.prompts, 20, timeout=60))
        job = json.loads(records[0].value)["job_id"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(EXIT_BOUND_S) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "stopping: writing the results so far (the workers go on with the job)" in stderr
    assert f"to continue: thinkroute status {job}; once done: thinkroute results {job} -o {out}" in stderr
    assert out.read_text() == "" and len((tmp_path / "out.jsonl.missing.txt").read_text().split()) == 20
