"""Cancel through the real pipeline (broker, router and inference workers in-process, a slow replay LLM) and from
the CLI: nothing of a cancelled job starts any more, the answers in flight are kept, each request is counted once
(answered or stopped), and the LLM never sees a stopped request."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from loadgen.procs import settings_env
from schemas.records import JobMeta
from tests.helpers import ROOT, wait_until
from tests.integration.helpers import assert_exact_totals, register, running, sample_requests, submit_requests
from tests.integration.test_cli_run import SAMPLE, one_error_line, thinkroute
from tests.integration.test_store import result
from workers.inference.serve import serve_inference
from workers.local.services import Service
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store, done_key, ids_key
from workers.store.keys import stopped_key
from workers.submit.jobs import wait_for_job

pytestmark = pytest.mark.integration


async def test_cancel_midway_stops_the_rest_and_keeps_what_was_answered(
    settings: Settings, artifact: Path, redis: Redis, slow_replay: Service
) -> None:
    s = settings.model_copy(
        update={
            "llm_base_url": f"http://{slow_replay.address}/v1",
            "inference": settings.inference.model_copy(update={"concurrency": 4}),
        }
    )
    store = Store(redis)
    n = 60
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        meta = await submit_requests(s, store, sample_requests(n), "cancel")
        job = meta.job_id

        async def ten_answers() -> bool:
            w.check()
            return (await store.totals(job)).completed >= 10

        await wait_until(ten_answers, 120, "10 answers")
        assert await store.stop_job(job, "cancelled", settle_s=300) in ("stopping", "cancelled")
        totals = await wait_for_job(store, meta, check=w.check, timeout_s=120)  # returns once it is terminal
    after = await store.job_meta(job)
    assert after is not None and (after.state, after.stop) == ("cancelled", "cancelled")
    final = await store.totals(job)
    assert final == totals  # the workers stopped after it settled: nothing changed since
    assert final.completed + final.failed + final.stopped == n and final.in_flight == 0
    assert final.completed >= 10 and final.stopped > 0
    done, stopped, ids = [await redis.smembers(k(job)) for k in (done_key, stopped_key, ids_key)]  # type: ignore[misc]
    assert not done & stopped and done | stopped == ids and len(ids) == n
    await assert_exact_totals(store, job, final.completed, final.failed)  # one record per answer, sums match
    # the LLM answered exactly the requests that were answered: none of the stopped ones was sent
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"http://{slow_replay.address}/stats")).json()
    assert stats["requests"] == final.completed + final.failed and stats["in_flight"] == 0


async def test_thinkroute_cancel(settings: Settings, redis: Redis, unique: str) -> None:
    env = settings_env(settings)
    submitted = await asyncio.to_thread(thinkroute, "submit", str(SAMPLE), "--json", env=env, timeout=120)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job = json.loads(submitted.stdout)["job_id"]  # running, no workers: nothing in flight
    proc = await asyncio.to_thread(thinkroute, "cancel", job, "--json", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {
        "job_id": job,
        "state": "cancelled",
        "total": 20,
        "completed": 0,
        "failed": 0,
        "stopped": 20,
        "in_flight": 0,
    }
    status = await asyncio.to_thread(thinkroute, "status", job, "--json", env=env, timeout=60)
    summary = json.loads(status.stdout)
    assert (summary["state"], summary["stopped"], summary["pending"], summary["stop"]) == (
        "cancelled",
        20,
        0,
        "cancelled",
    )
    again = await asyncio.to_thread(thinkroute, "cancel", job, env=env, timeout=60)
    assert again.returncode == 0 and f"job {job}: cancelled (20 of 20 requests stopped; 0 completed" in again.stdout

    done = f"job-done-{unique}"
    await register(Store(redis), JobMeta(job_id=done, total=1, source="t", submitted_at=1.0), [f"{done}/1"])
    assert await Store(redis).write_result(result(done, 1, "direct"))
    refused = await asyncio.to_thread(thinkroute, "cancel", done, env=env, timeout=60)
    assert refused.returncode == 2 and one_error_line(refused) == f"error: job {done} is done: it cannot be cancelled"
    missing = await asyncio.to_thread(thinkroute, "cancel", "job-nope", env=env, timeout=60)
    assert missing.returncode == 2 and one_error_line(missing) == "error: no job 'job-nope' in Redis"


async def test_run_of_a_job_cancelled_elsewhere_writes_its_answers_and_exits_1(
    settings: Settings, redis: Redis, unique: str, tmp_path: Path
) -> None:
    file = tmp_path / f"cancel-{unique}.jsonl"
    shutil.copy(SAMPLE, file)
    ids = [json.loads(x)["id"] for x in file.read_text().splitlines() if x.strip()]
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "workers", "run", str(file), "--json", "-o", str(out)]
    env = settings_env(settings)
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    store = Store(redis)
    found: list[str] = []

    async def submitted() -> bool:  # no workers run: the job waits with all 20 pending
        assert proc.returncode is None
        for job in await store.recent_jobs(50):
            meta = await store.job_meta(job)
            if meta is not None and meta.source == file.name and meta.state == "running":
                found.append(job)
                return True
        return False

    try:
        await wait_until(submitted, 120, "run to submit the job")
        job = found[0]
        for line, cid in ((1, ids[0]), (4, ids[3])):  # two answers came before the cancel
            answer = result(job, line, "direct").model_copy(update={"request_id": f"{job}/{cid}", "custom_id": cid})
            assert await store.write_result(answer)
        assert await store.stop_job(job, "cancelled", settle_s=300) == "cancelled"
        async with asyncio.timeout(60):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1, stderr.decode()[-2000:]
    summary = json.loads(stdout)
    assert (summary["state"], summary["completed"], summary["stopped"], summary["pending"]) == ("cancelled", 2, 18, 0)
    assert stderr.decode().splitlines()[-1] == (
        f"error: job {job} was cancelled: 18 of 20 requests were not run; 2 answers in {out}"
    )
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == [ids[0], ids[3]]
    assert out.with_name(out.name + ".missing.txt").read_text().split() == [c for c in ids if c not in (ids[0], ids[3])]
