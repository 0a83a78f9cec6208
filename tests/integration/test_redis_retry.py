"""The Redis client rides out short outages itself (redis-py's Retry, configured in ``redis_client``), on
plain commands and on the inference worker's automatic pipelines, Lua scripts included."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio.client import Pipeline
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.integration.test_store import result
from workers.local.services import start_redis
from workers.settings import Settings
from workers.store.jobstore import REDIS_BACKOFF, REDIS_RETRIES, Store, redis_client

pytestmark = pytest.mark.integration


def client_for(address: str) -> Store:
    return Store(redis_client(Settings(redis_url=SecretStr(f"redis://{address}/0"))), autopipeline=True)


def test_the_client_retries_connection_errors_and_timeouts_for_about_16_s() -> None:
    redis = redis_client(Settings(redis_url=SecretStr("redis://127.0.0.1:1/0")))
    retry = redis.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == REDIS_RETRIES == 7  # 8 attempts
    assert {RedisConnectionError, RedisTimeoutError} <= set(retry._supported_errors)
    assert isinstance(REDIS_BACKOFF, ExponentialBackoff)
    waits = [REDIS_BACKOFF.compute(failures) for failures in range(1, REDIS_RETRIES + 1)]
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0] and sum(waits) == pytest.approx(16.2)


async def test_a_script_call_waits_out_a_redis_restart(tmp_path: Path, unique: str) -> None:
    svc = start_redis(tmp_path / "redis")
    store = client_for(svc.address)
    restarted = svc
    try:
        job = f"job-{unique}"
        assert await store.write_result(result(job, 0, "direct"))  # connection and script cache warm
        svc.proc.kill()
        svc.proc.wait(10)
        # the write starts while Redis is down; Redis comes back while the client retries
        write = asyncio.ensure_future(store.write_result(result(job, 1, "direct")))
        restarted = await asyncio.to_thread(start_redis, tmp_path / "redis", svc.port)
        assert await asyncio.wait_for(write, 30) is True
        assert await store.is_done(job, f"{job}/1")
        assert (await store.totals(job)).completed == 1  # the restarted Redis kept nothing (no persistence)
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
        written = await asyncio.gather(*[store.write_result(result(job, i, "reasoning")) for i in range(5)])
        assert flushed == [True] and written == [True] * 5
        t = await store.totals(job)
        assert t.completed == 5 and t.routes["reasoning"].prompt_tokens == sum(10 + i for i in range(5))
    finally:
        await store.redis.aclose()
        svc.stop()
