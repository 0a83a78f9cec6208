"""Redis: every key ThinkRoute uses is named here, and results are written atomically and idempotently.

All keys of one job share the hash tag ``{job_id}`` so they live in one slot of a Redis Cluster and
the Lua script that writes a result may touch them together.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.messages import AttemptSummary
from schemas.records import JobMeta, JobTotals, RequestResult, RouteTotals
from workers.errors import ConfigError
from workers.settings import Settings
from workers.store.autopipe import AutoPipeline

JOBS_INDEX = "tr:jobs"  # sorted set: job_id -> submitted_at
ROUTES = ("reasoning", "direct")
TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


def meta_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:meta"


def totals_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:totals"


def done_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:done"


def latency_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:latency"


def result_key(job_id: str, request_id: str) -> str:
    return f"tr:{{{job_id}}}:req:{request_id}"


def escalated_key(job_id: str) -> str:
    return f"tr:{{{job_id}}}:escalated"


def attempt_key(job_id: str, request_id: str, attempt: int = 1) -> str:
    return f"tr:{{{job_id}}}:req:{request_id}:attempt:{attempt}"


ESCALATION = "escalation"  # totals bucket of first attempts that were escalated


# KEYS: done, result, totals, latency. ARGV: request_id, result_json, status, route,
# prompt_tokens, completion_tokens, reasoning_tokens, latency_s.
# Returns 1 when written, 0 when the request was already recorded (a redelivery): nothing changes.
_WRITE_RESULT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':requests', 1)
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':prompt_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':completion_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':reasoning_tokens', ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1])
return 1
"""


# KEYS: escalated, attempt, totals. ARGV: request_id, attempt_json, prompt, completion, reasoning tokens.
# Returns 1 when recorded, 0 when this request's first attempt was already recorded (a redelivery).
_WRITE_ESCALATION = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'escalation:requests', 1)
redis.call('HINCRBY', KEYS[3], 'escalation:prompt_tokens', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'escalation:completion_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'escalation:reasoning_tokens', ARGV[5])
return 1
"""


class Store:
    """Job and result records over one Redis connection pool (opened by the caller, closed by it).

    ``autopipeline``: the per-request calls (``is_done``, ``write_result``, ``write_escalation``) of
    concurrent tasks share round trips (``workers.store.autopipe``); what each call returns is unchanged.
    """

    def __init__(self, redis: Redis, autopipeline: bool = False) -> None:
        self.redis = redis
        self._write = redis.register_script(_WRITE_RESULT)
        self._escalate = redis.register_script(_WRITE_ESCALATION)
        self.pipeline = AutoPipeline(redis) if autopipeline else None

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        if self.pipeline is None:
            return await script(keys=keys, args=args)

        def queue(pipe: Pipeline) -> None:
            pipe.scripts.add(script)  # type: ignore[arg-type]  # redis-py types it as the sync Script
            pipe.evalsha(script.sha, len(keys), *keys, *args)

        try:
            return await self.pipeline.call(queue)
        except NoScriptError:
            # Redis restarted (empty script cache) after the pipeline checked its scripts, and the client's
            # Retry replayed it there: the script did not run; the next pipeline loads it again
            return await self.pipeline.call(queue)

    async def create_job(self, meta: JobMeta) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(meta_key(meta.job_id), meta.model_dump_json())
            pipe.zadd(JOBS_INDEX, {meta.job_id: meta.submitted_at})
            await pipe.execute()

    async def job_meta(self, job_id: str) -> JobMeta | None:
        raw = await self.redis.get(meta_key(job_id))
        return JobMeta.model_validate_json(raw) if raw else None

    async def is_done(self, job_id: str, request_id: str) -> bool:
        if self.pipeline is None:
            return bool(await self.redis.sismember(done_key(job_id), request_id))
        return bool(await self.pipeline.call(lambda pipe: pipe.sismember(done_key(job_id), request_id)))

    async def write_result(self, result: RequestResult) -> bool:
        """Record a request's outcome and add it to the job totals, once. False if already recorded."""
        job = result.job_id
        written = await self._script(
            self._write,
            [done_key(job), result_key(job, result.request_id), totals_key(job), latency_key(job)],
            [
                result.request_id,
                result.model_dump_json(),
                result.status,
                result.route.route,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                result.usage.reasoning_tokens,
                repr(result.latency_s),
            ],
        )
        return bool(written)

    async def write_escalation(self, job_id: str, request_id: str, attempt: AttemptSummary) -> bool:
        """Record a request's escalated first attempt and add its tokens to the job's escalation bucket, once."""
        written = await self._script(
            self._escalate,
            [escalated_key(job_id), attempt_key(job_id, request_id), totals_key(job_id)],
            [
                request_id,
                attempt.model_dump_json(),
                attempt.prompt_tokens,
                attempt.completion_tokens,
                attempt.reasoning_tokens,
            ],
        )
        return bool(written)

    async def totals(self, job_id: str) -> JobTotals:
        raw = await self.redis.hgetall(totals_key(job_id))
        counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        routes = {}
        for route in ROUTES:
            fields = {f: counts.get(f"{route}:{f}", 0) for f in RouteTotals.model_fields}
            routes[route] = RouteTotals(**fields)
        esc = RouteTotals(**{f: counts.get(f"{ESCALATION}:{f}", 0) for f in RouteTotals.model_fields})
        return JobTotals(
            completed=counts.get("completed", 0), failed=counts.get("failed", 0), routes=routes, escalations=esc
        )

    async def latency_percentiles(self, job_id: str, qs: Iterable[float] = (0.5, 0.95, 0.99)) -> dict[str, float]:
        """Nearest-rank percentiles of submit-to-stored latency, read by rank from the sorted set."""
        key = latency_key(job_id)
        n = int(await self.redis.zcard(key))
        out: dict[str, float] = {}
        for q in qs:
            name = f"p{round(q * 100):d}"
            if n == 0:
                out[name] = 0.0
                continue
            rank = min(max(math.ceil(q * n) - 1, 0), n - 1)
            hit = await self.redis.zrange(key, rank, rank, withscores=True)
            out[name] = float(hit[0][1]) if hit else 0.0
        return out

    async def results(self, job_id: str, chunk: int = 500) -> AsyncIterator[RequestResult]:
        """Every recorded result of a job (unordered; callers sort by ``line``)."""
        ids: list[str] = []
        async for rid in self.redis.sscan_iter(done_key(job_id), count=chunk):
            ids.append(rid.decode() if isinstance(rid, bytes) else str(rid))
        for i in range(0, len(ids), chunk):
            keys = [result_key(job_id, rid) for rid in ids[i : i + chunk]]
            for raw in await self.redis.mget(keys):
                if raw:
                    yield RequestResult.model_validate_json(raw)

    async def recent_jobs(self, limit: int = 20) -> list[str]:
        raw: list[Any] = await self.redis.zrevrange(JOBS_INDEX, 0, limit - 1)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]


# Transient Redis errors (a restart, a failover) are retried by redis-py itself, on every command and pipeline
# (the autopipeline's included): 8 attempts, 0.2 s doubling to 5 s between them (0.2, 0.4, ... 3.2, 5, 5), so
# a caller gives up only after Redis was unreachable for about 16 s plus the attempts' own timeouts.
REDIS_RETRIES = 7
REDIS_BACKOFF = ExponentialBackoff(cap=5.0, base=0.1)  # redis-py waits base * 2**failures: 0.2 s first


def redis_client(s: Settings) -> Redis:
    """The Redis client of the workers and the CLI, retrying connection errors and timeouts (see above)."""
    if s.redis_url is None:
        raise ConfigError("THINKROUTE_REDIS_URL is not set")
    return Redis.from_url(
        s.redis_url.get_secret_value(),
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry=Retry(REDIS_BACKOFF, retries=REDIS_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
