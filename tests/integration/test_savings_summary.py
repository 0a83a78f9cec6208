"""The job summary's savings report, read from a real Redis (Valkey): the JSON keys and the printed table."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from schemas.records import JobMeta, JobPlan
from tests.factories import explored_pair
from tests.integration.helpers import register
from workers.cli import console
from workers.store.jobstore import Store, exploration_key, explored_key
from workers.submit.jobs import summary
from workers.submit.savings import NO_EXPLORATION

pytestmark = pytest.mark.integration


async def test_summary_has_savings_from_the_exploration_records(
    redis: Redis, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store, job = Store(redis), f"job-sv-{unique}"
    pairs = [
        explored_pair(1, "math", "reasoning", (100, True, "B"), (10, False, "C"), job=job),
        explored_pair(2, "math", "reasoning", (200, True, "A"), (20, True, "A"), job=job),
        explored_pair(3, "law", "direct", (10, True, "D"), (50, True, "D"), job=job),
        explored_pair(4, "law", "direct", (30, False, None), (150, True, "E"), job=job),
    ]
    plan = JobPlan(explore=0.5, explore_total=4)
    meta = JobMeta(job_id=job, total=4, source="f", submitted_at=time.time(), plan=plan)
    await register(store, meta, [r.request_id for r, _ in pairs])
    for r, e in pairs:
        assert await store.write_result(r)
        # the exploration record as Store.write_exploration (engineer "explore") stores it: set member + record
        await redis.sadd(explored_key(job), e.request_id)
        await redis.set(exploration_key(job, e.request_id), e.model_dump_json())
    s = await summary(store, meta, wall_s=1.0)
    savings = s["savings"]
    assert s["savings_hint"] is None and savings is not None
    assert {"tokens_saved", "tokens_saved_pct", "est_accuracy", "ci95", "explored", "metric", "per_category"} <= set(
        savings
    )
    assert set(savings["est_accuracy"]) == {"router", "always", "never"}
    assert {"router", "always", "never", "tokens_saved", "tokens_saved_pct"} <= set(savings["ci95"])
    assert savings["explored"] == {"pairs": 4, "graded": 4, "incomplete": 0}
    assert savings["metric"] == "accuracy"
    assert savings["est_accuracy"] == {"router": 0.75, "always": 1.0, "never": 0.5}
    # routed 340 (300 reasoning + 40 direct); always = 300 + 40 * (200 / 40) = 500: 160 saved, 32%
    assert (savings["tokens_saved"], savings["tokens_saved_pct"]) == (160, 32.0)
    console.print_summary(s, as_json=False)
    printed = capsys.readouterr().out
    assert "routing value: 4 explored pairs (4 graded), accuracy" in printed
    assert "160 (32.0%)" in printed and "0.750" in printed and "per category" in printed


async def test_a_job_without_exploration_has_null_savings_and_a_hint(
    redis: Redis, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store, job = Store(redis), f"job-nx-{unique}"
    r, _ = explored_pair(1, "law", "direct", (10, True, "D"), (50, True, "D"), job=job)
    meta = JobMeta(job_id=job, total=1, source="f", submitted_at=time.time())
    await register(store, meta, [r.request_id])
    assert await store.write_result(r)
    s = await summary(store, meta, wall_s=1.0)
    assert s["savings"] is None and s["savings_hint"] == NO_EXPLORATION
    console.print_summary(s, as_json=False)
    assert "savings: run with --explore 0.05 to estimate savings" in capsys.readouterr().out
