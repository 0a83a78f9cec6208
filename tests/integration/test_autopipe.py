"""Automatic pipelining against a real Redis: shared round trips, per-call results and errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from schemas.records import JobMeta
from tests.integration.helpers import register
from tests.integration.test_store import ids, result
from workers.store.autopipe import AutoPipeline
from workers.store.jobstore import Store

pytestmark = pytest.mark.integration


async def test_concurrent_writes_share_round_trips_and_count_once(redis: Redis, unique: str) -> None:
    store = Store(redis, autopipeline=True)
    assert store.pipeline is not None
    job = f"job-{unique}"
    await register(store, JobMeta(job_id=job, total=300, source="t", submitted_at=time.time()), ids(job, range(300)))
    rs = [result(job, i, "reasoning" if i % 3 == 0 else "direct") for i in range(300)]
    before = await asyncio.gather(*[store.is_done(job, r.request_id) for r in rs[:10]])
    written = await asyncio.gather(*[store.write_result(r) for r in rs + rs[:50]])  # 50 redeliveries
    after = await asyncio.gather(*[store.is_done(job, r.request_id) for r in rs[:10]])
    assert before == [False] * 10 and after == [True] * 10
    assert sum(written) == 300 and written[300:] == [False] * 50
    t = await store.totals(job)
    reasoning = [r for r in rs if r.route.route == "reasoning"]
    assert t.completed == 300 and t.routes["reasoning"].requests == len(reasoning) == 100
    assert t.routes["reasoning"].prompt_tokens == sum(r.usage.prompt_tokens for r in reasoning)
    assert t.routes["direct"].completion_tokens == sum(r.usage.completion_tokens for r in rs if r not in reasoning)
    # 370 calls in a handful of round trips (one per event-loop turn, at most 512 commands each)
    assert store.pipeline.commands == 370
    assert store.pipeline.flushes <= 6


async def test_one_failing_command_fails_only_its_caller(redis: Redis, unique: str) -> None:
    pipe = AutoPipeline(redis)
    await redis.set(f"s-{unique}", "not a number")
    ok1, bad, ok2 = await asyncio.gather(
        pipe.call(lambda p: p.incr(f"n-{unique}")),
        pipe.call(lambda p: p.incr(f"s-{unique}")),
        pipe.call(lambda p: p.incr(f"n-{unique}")),
        return_exceptions=True,
    )
    assert (ok1, ok2) == (1, 2)
    assert isinstance(bad, ResponseError)
    assert pipe.flushes == 1


async def test_a_command_the_client_refuses_to_queue_fails_only_its_caller(redis: Redis, unique: str) -> None:
    """(A cluster pipeline refuses some methods when they are queued, e.g. ``evalsha``.)"""
    pipe = AutoPipeline(redis)

    def refused(p: object) -> None:
        raise ValueError("refused while queueing")

    ok1, bad, ok2 = await asyncio.gather(
        pipe.call(lambda p: p.incr(f"q-{unique}")),
        pipe.call(refused),
        pipe.call(lambda p: p.incr(f"q-{unique}")),
        return_exceptions=True,
    )
    assert (ok1, ok2) == (1, 2) and isinstance(bad, ValueError)
    assert (pipe.flushes, pipe.commands) == (1, 2)


async def test_connection_failure_reaches_every_caller_of_the_flush(unique: str) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
    pipe = AutoPipeline(dead)
    try:
        outcomes = await asyncio.gather(
            *[pipe.call(lambda p, i=i: p.set(f"k-{unique}-{i}", i)) for i in range(5)], return_exceptions=True
        )
    finally:
        await dead.aclose()
    assert len(outcomes) == 5 and all(isinstance(o, RedisConnectionError) for o in outcomes)
    assert pipe.flushes == 0
