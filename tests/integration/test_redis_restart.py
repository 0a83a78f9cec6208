"""Redis dies mid-job (SIGKILL, persistence on) and comes back: workers reconnect with backoff, nothing is
lost or counted twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.conftest import ROOT, wait_until
from tests.integration.helpers import running
from workers.batchfile import read_batch
from workers.bus import ensure_topics, make_producer
from workers.jobs import submit, wait_for_job
from workers.runtime import kafka_config, serve_inference, serve_router
from workers.services import Service, start_redis
from workers.settings import Settings
from workers.store import Store, done_key

pytestmark = pytest.mark.integration


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[Service]:
    svc = start_redis(tmp_path / "redis", persist=True, password="s3cret-pw")
    yield svc
    svc.stop()


async def test_redis_killed_and_restarted_mid_job(
    settings: Settings, artifact: Path, durable_redis: Service, tmp_path: Path
) -> None:
    url = f"redis://:s3cret-pw@{durable_redis.address}/0"
    s = settings.model_copy(
        update={
            "redis_url": SecretStr(url),
            "inference": settings.inference.model_copy(update={"concurrency": 4}),
        }
    )
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    requests, _ = read_batch(ROOT / "loadgen" / "samples" / "mmlu_pro_200.jsonl", s.max_prompt_chars)
    n = 150
    redis = Redis.from_url(url)
    store = Store(redis)
    producer = make_producer(kc)
    await producer.start()
    restarted = durable_redis
    try:
        async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
            meta = await submit(producer, store, t.prompts, requests[:n], source="redis-restart")

            async def some_done() -> bool:
                w.check()
                tot = await store.totals(meta.job_id)
                return tot.completed >= 30

            await wait_until(some_done, 120, "30 answers before the Redis kill")
            durable_redis.proc.kill()
            durable_redis.proc.wait(10)
            restarted = start_redis(tmp_path / "redis", durable_redis.port, persist=True, password="s3cret-pw")
            totals = await wait_for_job(store, meta, check=w.check, timeout_s=180)
        assert (totals.completed, totals.failed) == (n, 0)
        assert await redis.scard(done_key(meta.job_id)) == n  # type: ignore[misc]
        results = [r async for r in store.results(meta.job_id)]
        assert len(results) == n
        for route in ("reasoning", "direct"):
            mine = [r for r in results if r.route.route == route]
            assert totals.routes[route].requests == len(mine)
            assert totals.routes[route].completion_tokens == sum(r.usage.completion_tokens for r in mine)
    finally:
        await producer.stop()
        await redis.aclose()
        restarted.stop()
