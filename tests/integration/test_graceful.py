"""SIGTERM mid-job: stop fetching, drain, commit, close. Committed offsets end exactly at what was stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from loadgen.procs import Procs, settings_env
from tests.helpers import wait_until
from tests.integration.helpers import assert_exact_totals, committed, sample_requests, submit_requests
from workers.local.services import Service
from workers.settings import Settings
from workers.store.jobstore import Store

pytestmark = pytest.mark.integration


async def test_sigterm_drains_and_commits_exactly_what_was_stored(
    settings: Settings, artifact: Path, redis: Redis, slow_replay: Service, tmp_path: Path
) -> None:
    s = settings.model_copy(
        update={
            "llm_base_url": f"http://{slow_replay.address}/v1",
            "inference": settings.inference.model_copy(update={"concurrency": 8}),
        }
    )
    t = s.topics
    n = 120
    requests = sample_requests(n)
    procs = Procs(tmp_path, settings_env(s))
    procs.start("router", "router")
    procs.start("inference", "inference")
    store = Store(redis)
    try:
        meta = await submit_requests(s, store, requests, "sigterm")

        async def partly_done() -> bool:
            return (await store.totals(meta.job_id)).completed >= 20

        await wait_until(partly_done, 120, "20 answers")
        inference = procs.procs["inference"]
        inference.terminate()
        assert inference.proc.wait(30) == 0  # drained and closed cleanly
        stored = (await store.totals(meta.job_id)).completed
        assert 20 <= stored < n
        got = await committed(s.kafka_bootstrap or "", s.inference.group, [t.reasoning, t.direct], s.partitions)
        assert sum(v for v in got.values() if v > 0) == stored  # nothing stored uncommitted, nothing committed unstored

        procs.start("inference", "inference")

        async def finished() -> bool:
            return (await store.totals(meta.job_id)).completed >= n

        await wait_until(finished, 180, "the rest of the job after the restart")
        results = await assert_exact_totals(store, meta.job_id, n)
        # no prompt or answer text in the workers' logs (INFO level)
        logs = procs.logs()
        assert "inference up" in logs and "router up" in logs
        for req in requests:
            question = req.body.messages[-1].content.split("Question: ", 1)[1][:60]
            assert question not in logs
        assert not any(r.answer and len(r.answer) > 12 and r.answer in logs for r in results)
    finally:
        procs.stop_all()
