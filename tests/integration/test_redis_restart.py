"""Redis dies mid-job (SIGKILL, persistence on) and comes back: workers reconnect with backoff, nothing is
lost or counted twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.helpers import wait_until
from tests.integration.helpers import assert_exact_totals, running, sample_requests, submit_requests
from workers.inference.serve import serve_inference
from workers.local.services import Service, start_redis
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.jobs import wait_for_job

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
    n = 150
    # the test's own client rides out the restart with redis-py's Retry, as wait_for_job expects of its client
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=10)
    redis = Redis.from_url(url, retry=retry, retry_on_error=[RedisConnectionError, RedisTimeoutError])
    store = Store(redis)
    restarted = durable_redis
    try:
        async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
            meta = await submit_requests(s, store, sample_requests(n), "redis-restart")

            async def some_done() -> bool:
                w.check()
                tot = await store.totals(meta.job_id)
                return tot.completed >= 30

            await wait_until(some_done, 120, "30 answers before the Redis kill")
            durable_redis.proc.kill()
            durable_redis.proc.wait(10)
            restarted = start_redis(tmp_path / "redis", durable_redis.port, persist=True, password="s3cret-pw")
            await wait_for_job(store, meta, check=w.check, timeout_s=180)
        await assert_exact_totals(store, meta.job_id, n)
    finally:
        await redis.aclose()
        restarted.stop()
