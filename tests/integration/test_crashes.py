"""Kill -9 at random and at precise points: every prompt is routed and answered exactly once in Redis.

Workers run as real processes. Crash points (workers/crashpoints.py) kill a worker between the broker's
ack and the router's commit, between the LLM answer and the Redis write, and between the Redis write
and the offset commit; seeded SIGKILLs hit the router at random moments of the job.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from redis.asyncio import Redis

from loadgen.procs import Procs, settings_env
from tests.helpers import wait_until
from tests.integration.helpers import (
    assert_exact_totals,
    committed,
    restart_until_done,
    sample_requests,
    submit_requests,
)
from workers.settings import Settings
from workers.store.jobstore import Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


async def test_router_killed_at_random_moments_and_between_publish_and_commit(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path
) -> None:
    n = 200
    s = settings.model_copy(update={"router": settings.router.model_copy(update={"batch_max": 8})})
    procs = Procs(tmp_path, settings_env(s))
    kinds = {"router": "router", "inference": "inference"}
    # the first router dies between the broker's ack of its 3rd batch and the commit
    procs.start("router", "router", THINKROUTE_CRASH_POINTS="after_publish=3")
    procs.start("inference", "inference")
    store = Store(redis)
    job = (await submit_requests(s, store, sample_requests(n), "crash")).job_id
    rng = random.Random(20261123)
    kills = sorted(rng.sample(range(40, n - 20), 3))
    try:
        for threshold in kills:

            async def progressed(at: int = threshold) -> bool:
                procs.restart_dead(kinds)
                t = await store.totals(job)
                return t.completed + t.failed >= at

            await wait_until(progressed, 240, f"{threshold} answers")
            procs.kill("router")
            procs.start("router", "router")

        async def finished() -> bool:
            procs.restart_dead(kinds)
            t = await store.totals(job)
            return t.completed + t.failed >= n

        await wait_until(finished, 240, "the job to finish")
        await assert_exact_totals(store, job, n)
        assert ("router", 137) in procs.exits  # the crash point fired
        assert sum(1 for name, _ in procs.exits if name == "router") >= 4
    finally:
        procs.stop_all()


async def test_inference_killed_between_llm_and_store_and_between_store_and_commit(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path
) -> None:
    n = 120
    procs = Procs(tmp_path, settings_env(settings))
    procs.start("router", "router")
    procs.start("inference", "inference", THINKROUTE_CRASH_POINTS="after_llm=15")
    store = Store(redis)
    job = (await submit_requests(settings, store, sample_requests(n), "crash")).job_id
    crashes = iter(["after_store=20", "after_llm=30", "after_store=10", ""])
    try:

        async def finished() -> bool:
            t = await store.totals(job)
            return t.completed + t.failed >= n

        restarts = await restart_until_done(procs, crashes, finished, "the job to finish through inference crashes")
        await assert_exact_totals(store, job, n)
        assert restarts >= 2 and procs.exits.count(("inference", 137)) >= 2
        procs.stop_all()
        got = await committed(
            settings.kafka_bootstrap or "",
            settings.inference.group,
            [settings.topics.reasoning, settings.topics.direct],
            settings.partitions,
        )
        assert sum(v for v in got.values() if v > 0) == n  # nothing left uncommitted after the drain
    finally:
        procs.stop_all()
