"""The Redis client rides out short outages itself (redis-py's Retry, configured in ``redis_client``), on
plain commands and on the inference worker's automatic pipelines, Lua scripts included."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio.client import Pipeline
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.records import JobMeta
from tests.integration.helpers import register
from tests.integration.test_store import ids, result
from workers.local.services import start_redis
from workers.settings import Settings
from workers.store.jobstore import REDIS_BACKOFF, REDIS_RETRIES, Store, redis_client

pytestmark = pytest.mark.integration


def client_for(address: str) -> Store:
    return Store(redis_client(Settings(redis_url=SecretStr(f"redis://{address}/0"))), autopipeline=True)


def test_the_client_retries_connection_errors_for_13_to_26_s_and_not_timeouts() -> None:
    redis = redis_client(Settings(redis_url=SecretStr("redis://127.0.0.1:1/0")))
    retry = redis.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == REDIS_RETRIES == 9  # 10 attempts
    assert RedisConnectionError in set(retry._supported_errors)
    # a silent Redis is reported after one socket timeout, not after every retry's
    assert RedisTimeoutError not in set(retry._supported_errors)
    assert isinstance(REDIS_BACKOFF, EqualJitterBackoff)
    nominal = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]
    for _ in range(50):  # equal jitter: each wait between half and all of its nominal value
        waits = [REDIS_BACKOFF.compute(failures) for failures in range(1, REDIS_RETRIES + 1)]
        assert all(n / 2 <= w <= n for w, n in zip(waits, nominal, strict=True))
        assert 13.1 - 1e-9 <= sum(waits) <= 26.2 + 1e-9


async def test_a_script_call_waits_out_a_redis_restart(tmp_path: Path, unique: str) -> None:
    svc = start_redis(tmp_path / "redis", persist=True)  # the job's registration survives
    store = client_for(svc.address)
    restarted = svc
    try:
        job = f"job-{unique}"
        await register(store, JobMeta(job_id=job, total=2, source="t", submitted_at=time.time()), ids(job, range(2)))
        assert await store.write_result(result(job, 0, "direct"))  # connection and script cache warm
        svc.proc.kill()
        svc.proc.wait(10)
        # the write starts while Redis is down; Redis comes back while the client retries
        write = asyncio.ensure_future(store.write_result(result(job, 1, "direct")))
        restarted = await asyncio.to_thread(start_redis, tmp_path / "redis", svc.port, persist=True)
        assert await asyncio.wait_for(write, 30) is True
        assert await store.is_done(job, f"{job}/1")
        assert (await store.totals(job)).completed == 2  # AOF always: the first write survived the SIGKILL
    finally:
        await store.redis.aclose()
        restarted.stop()


async def test_an_autopipelined_script_survives_redis_losing_its_scripts_mid_pipeline(
    tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a restart between the pipeline's SCRIPT EXISTS and its EVALSHA looks like: the replayed EVALSHA
    meets an empty script cache (NOSCRIPT); the call runs the script in the next pipeline instead."""
    svc = start_redis(tmp_path / "redis")
    store = client_for(svc.address)
    load_scripts = Pipeline.load_scripts
    flushed: list[bool] = []

    async def load_then_lose(self: Pipeline) -> None:
        await load_scripts(self)
        if not flushed:
            flushed.append(True)
            await store.redis.script_flush()

    monkeypatch.setattr(Pipeline, "load_scripts", load_then_lose)
    try:
        job = f"job-{unique}"
        await register(store, JobMeta(job_id=job, total=5, source="t", submitted_at=time.time()), ids(job, range(5)))
        written = await asyncio.gather(*[store.write_result(result(job, i, "reasoning")) for i in range(5)])
        assert flushed == [True] and written == [True] * 5
        t = await store.totals(job)
        assert t.completed == 5 and t.routes["reasoning"].prompt_tokens == sum(10 + i for i in range(5))
    finally:
        await store.redis.aclose()
        svc.stop()
