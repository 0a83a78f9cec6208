"""Client side of a job: submit prompts, wait for them, summarise, export results."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.batch import BatchError, BatchOutputLine, BatchResponse
from schemas.messages import PromptMessage
from schemas.records import JobMeta, JobTotals, RequestResult
from workers.errors import JobTimeout, Unreachable
from workers.store.jobstore import ROUTES, TOKEN_KINDS, Store
from workers.submit.batchfile import InputRequest

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


def request_id(job_id: str, custom_id: str) -> str:
    return f"{job_id}/{custom_id}"


async def submit(
    producer: AIOKafkaProducer,
    store: Store,
    topic: str,
    requests: Sequence[InputRequest],
    source: str,
    job_id: str | None = None,
) -> JobMeta:
    """Record the job (its total first, so progress is never over 100%), then publish every prompt.

    Returns once the broker acknowledged every prompt.
    """
    job_id = job_id or new_job_id()
    now = time.time()
    meta = JobMeta(job_id=job_id, total=len(requests), source=source, submitted_at=now)
    await store.create_job(meta)
    acks = []
    for req in requests:
        rid = request_id(job_id, req.custom_id)
        msg = PromptMessage(
            request_id=rid, job_id=job_id, custom_id=req.custom_id, line=req.line, body=req.body, submitted_at=now
        )
        acks.append(await producer.send(topic, msg.model_dump_json().encode(), key=rid.encode()))
    await asyncio.gather(*acks)
    return meta


async def wait_for_job(
    store: Store,
    meta: JobMeta,
    progress: ProgressFn | None = None,
    check: Callable[[], None] | None = None,
    poll_s: float = 0.2,
    timeout_s: float | None = None,
) -> JobTotals:
    """Poll the job's counters until completed + failed reaches the total (``check`` may raise).

    Raises JobTimeout after ``timeout_s``. Redis being briefly away (a restart, a failover) only delays the
    answer: the client retries with backoff (``workers.store.jobstore.redis_client``); once it gives up,
    Unreachable names Redis's address and the job's progress.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done = 0
    while True:
        try:
            totals = await store.totals(meta.job_id)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            detail = f"gave up waiting for job {meta.job_id} ({done}/{meta.total} done): {exc}"
            raise Unreachable("Redis", redis_address(store.redis), detail) from exc
        done = totals.completed + totals.failed
        if progress:
            progress(done, meta.total)
        if done >= meta.total:
            return totals
        if check:
            check()
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeout(meta.job_id, done, meta.total, timeout_s or 0.0)
        await asyncio.sleep(poll_s)


def redis_address(redis: Redis) -> str:
    """host:port/db of a client (never its password), for error messages."""
    kw = redis.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


async def summary(store: Store, meta: JobMeta, wall_s: float | None = None) -> dict[str, Any]:
    totals = await store.totals(meta.job_id)
    lat = await store.latency_percentiles(meta.job_id)
    routes = {r: totals.routes[r].requests for r in ROUTES}
    esc = totals.escalations
    escalation_tokens = {k.removesuffix("_tokens"): getattr(esc, k) for k in TOKEN_KINDS}
    tokens = {
        k.removesuffix("_tokens"): sum(getattr(totals.routes[r], k) for r in ROUTES) + getattr(esc, k)
        for k in TOKEN_KINDS
    }
    by_route = {
        r: {k.removesuffix("_tokens"): getattr(totals.routes[r], k) for k in TOKEN_KINDS}
        | {"completed": totals.routes[r].completed, "failed": totals.routes[r].failed}
        for r in ROUTES
    }
    return {
        "job_id": meta.job_id,
        "source": meta.source,
        "total": meta.total,
        "completed": totals.completed,
        "failed": totals.failed,
        "pending": max(meta.total - totals.completed - totals.failed, 0),
        "routes": routes,
        "tokens": tokens,
        "tokens_by_route": by_route,
        "escalations": esc.requests,
        "escalation_tokens": escalation_tokens,
        "latency_s": {k: round(v, 4) for k, v in lat.items()},
        "wall_s": round(wall_s if wall_s is not None else time.time() - meta.submitted_at, 3),
    }


def output_line(result: RequestResult) -> BatchOutputLine:
    """The result as a line of OpenAI's batch output. A completion, and an HTTP error answer of the backend
    (4xx, or 429/5xx once retries ran out), is ``response: {status_code, request_id, body}`` (the completion,
    or the backend's error body as sent) with ``error: null``; a request that got no HTTP answer (timeout,
    connection failure, a 200 that is not a completion) is ``response: null`` with ``error: {code, message}``."""
    digest = hashlib.sha256(result.request_id.encode()).hexdigest()[:24]
    route = result.route.model_dump(mode="json")
    response, error = None, None
    status = result.http_status
    if result.status == "completed":
        response = BatchResponse(status_code=status or 200, request_id=result.request_id, body=result.response_body)
    elif status is not None and status >= 400:
        body = result.response_body
        if body is None:  # the backend's body was not a JSON object (or is not stored): OpenAI's shape around it
            message = result.error or f"HTTP {status}"
            body = {"error": {"message": message, "type": None, "param": None, "code": None}}
        response = BatchResponse(status_code=status, request_id=result.request_id, body=body)
    else:
        error = BatchError(code=result.error_code or "llm_error", message=result.error or "failed")
    return BatchOutputLine(
        id=f"batch_req_{digest}", custom_id=result.custom_id, response=response, error=error, route=route
    )


async def write_results(store: Store, job_id: str, path: Path) -> int:
    """Write the job's results in input order, one OpenAI Batch output line each; returns the count."""
    results = [r async for r in store.results(job_id)]
    results.sort(key=lambda r: r.line)
    lines = [json.dumps(output_line(r).model_dump(mode="json"), ensure_ascii=False) + "\n" for r in results]
    await asyncio.to_thread(_write_atomically, path, lines)
    return len(results)


def _write_atomically(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    tmp.replace(path)
