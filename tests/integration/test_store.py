"""Redis accounting against a real server: atomic, idempotent result + counters."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from schemas.messages import RouteDecision
from schemas.records import JobMeta, RequestResult, Usage
from tests.factories import route_decision
from tests.integration.helpers import register
from workers.store.jobstore import Store, done_key, result_key, totals_key

pytestmark = pytest.mark.integration


def decision(route: str) -> RouteDecision:
    return route_decision(route)


def ids(job: str, numbers: range) -> list[str]:
    return [f"{job}/{i}" for i in numbers]


def result(job: str, i: int, route: str, status: str = "completed", latency: float = 1.0) -> RequestResult:
    return RequestResult(
        request_id=f"{job}/{i}",
        job_id=job,
        custom_id=str(i),
        line=i,
        status=status,
        route=decision(route),  # type: ignore[arg-type]
        model="m",
        usage=Usage(prompt_tokens=10 + i, completion_tokens=100 + i, reasoning_tokens=i if route == "reasoning" else 0),
        attempts=1,
        llm_latency_s=0.1,
        latency_s=latency,
        finished_at=time.time(),
    )


async def test_results_count_once_even_when_written_concurrently(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    await register(store, JobMeta(job_id=job, total=4, source="t", submitted_at=time.time()), ids(job, range(1, 5)))
    rs = [
        result(job, 1, "reasoning"),
        result(job, 2, "direct"),
        result(job, 3, "direct", "failed"),
        result(job, 4, "reasoning"),
    ]
    # every result written three times, concurrently: a redelivery storm
    written = await asyncio.gather(*[store.write_result(r) for r in rs * 3])
    assert sum(written) == 4
    t = await store.totals(job)
    assert (t.completed, t.failed) == (3, 1)
    r, d = t.routes["reasoning"], t.routes["direct"]
    assert (r.requests, r.completed, r.failed) == (2, 2, 0)
    assert (d.requests, d.completed, d.failed) == (2, 1, 1)
    assert (r.prompt_tokens, r.completion_tokens, r.reasoning_tokens) == (11 + 14, 101 + 104, 1 + 4)
    assert (d.prompt_tokens, d.completion_tokens, d.reasoning_tokens) == (12 + 13, 102 + 103, 0)
    stored = sorted([x async for x in store.results(job)], key=lambda x: x.line)
    assert [x.request_id for x in stored] == [x.request_id for x in rs]
    assert stored[2].status == "failed"
    assert await store.is_done(job, f"{job}/2") and not await store.is_done(job, f"{job}/99")
    assert await redis.scard(done_key(job)) == 4  # type: ignore[misc]
    assert await redis.exists(result_key(job, f"{job}/1"), totals_key(job)) == 2
    meta = await store.job_meta(job)
    assert meta is not None and meta.total == 4
    assert job in await store.recent_jobs()


async def test_latency_percentiles_are_nearest_rank(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    await register(store, JobMeta(job_id=job, total=100, source="t", submitted_at=time.time()), ids(job, range(1, 101)))
    for i in range(1, 101):
        await store.write_result(result(job, i, "direct", latency=float(i)))
    assert await store.latency_percentiles(job) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert await store.latency_percentiles(f"none-{unique}") == {"p50": 0.0, "p95": 0.0, "p99": 0.0}
