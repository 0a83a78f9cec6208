"""Bench phase 3: the inference worker + Redis alone (routed messages straight to the routed topics), and
the whole pipeline (prompts -> router -> inference -> Redis) with the replay LLM server at zero latency."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from loadgen.bench_common import POLL_S, log, paused, send_prompts
from schemas.batch import ChatBody
from schemas.messages import RoutedMessage
from schemas.records import JobMeta
from workers.local.services import Service
from workers.store.integrity import new_secret, sign
from workers.store.jobstore import Store, done_key

WARMUP = 32


@dataclass
class PipelineRig:
    producer: AIOKafkaProducer
    redis: Redis
    inference: Service
    reasoning_topic: str
    direct_topic: str
    timeout_s: float


async def wait_results(rig: PipelineRig, job: str, count: int, *procs: Service) -> None:
    """Poll the job's done-set size in Redis (one SCARD) until it reaches ``count``."""
    deadline = time.monotonic() + rig.timeout_s
    while (n := int(await rig.redis.scard(done_key(job)))) < count:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.proc.returncode}):\n{p.log_tail(30)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job}: {n}/{count} results in Redis after {rig.timeout_s:.0f}s")
        await asyncio.sleep(POLL_S)


async def finished(rig: PipelineRig, job: str) -> list[tuple[float, float]]:
    """(submitted_at, finished_at) of every result of ``job``."""
    out = []
    async for r in Store(rig.redis).results(job):
        out.append((r.finished_at - r.latency_s, r.finished_at))
    return out


async def register(rig: PipelineRig, job: str, count: int) -> bytes:
    """Register ``job`` with request ids ``<job>/0`` .. ``<job>/<count - 1>`` as submit does (the inference
    worker answers only registered, signed prompts); returns its secret."""
    secret = new_secret()
    store = Store(rig.redis)
    meta = JobMeta(job_id=job, total=count, source="bench", submitted_at=time.time())
    await store.register_job(meta, [f"{job}/{i}" for i in range(count)], secret)
    await store.start_job(job)
    return secret


async def publish_routed(rig: PipelineRig, job: str, routed: Sequence[RoutedMessage]) -> None:
    futs = []
    secret = await register(rig, job, len(routed))
    now = time.time()
    for i, m in enumerate(routed):
        rid = f"{job}/{i}"
        p = m.prompt.model_copy(update={"job_id": job, "request_id": rid, "custom_id": str(i), "submitted_at": now})
        p = sign(p, secret)
        msg = m.model_copy(update={"prompt": p, "routed_at": now})
        topic = rig.reasoning_topic if m.route.route == "reasoning" else rig.direct_topic
        futs.append(await rig.producer.send(topic, msg.model_dump_json().encode(), key=rid.encode()))
    await asyncio.gather(*futs)


async def inference_alone(rig: PipelineRig, routed: Sequence[RoutedMessage], count: int) -> dict[str, Any]:
    """``count`` routed messages (the router's real decisions, re-keyed) produced while the worker is
    stopped; the rate is count / (last ``finished_at`` - the moment it was let go)."""
    batch = [routed[i % len(routed)] for i in range(count)]
    warm = f"iwarm-{uuid.uuid4().hex[:8]}"
    await publish_routed(rig, warm, batch[:WARMUP])
    await wait_results(rig, warm, min(WARMUP, count), rig.inference)
    job = f"inf-{uuid.uuid4().hex[:8]}"
    log(f"inference + Redis: {count} routed messages as a backlog ...")
    with paused(rig.inference):
        await publish_routed(rig, job, batch)
    start = time.time()
    await wait_results(rig, job, count, rig.inference)
    span = max(f for _, f in await finished(rig, job)) - start
    log(f"inference + Redis: {count / span:.0f} results/s")
    return {"per_s": count / span, "span_s": span, "results": count}


async def pipeline(
    rig: PipelineRig, router: Service, prompts_topic: str, bodies: Sequence[ChatBody], warm_bodies: Sequence[ChatBody]
) -> dict[str, Any]:
    """Prompts produced while router and inference worker are stopped, then let go; the rate is
    count / (last ``finished_at`` - the moment they were let go)."""
    warm = f"pwarm-{uuid.uuid4().hex[:8]}"
    warm_secret = await register(rig, warm, len(warm_bodies[:WARMUP]))
    await send_prompts(rig.producer, prompts_topic, warm, warm_bodies[:WARMUP], warm_secret)
    await wait_results(rig, warm, min(WARMUP, len(warm_bodies)), rig.inference, router)
    job = f"pipe-{uuid.uuid4().hex[:8]}"
    log(f"pipeline: {len(bodies)} prompts as a backlog ...")
    secret = await register(rig, job, len(bodies))
    with paused(router, rig.inference):
        await send_prompts(rig.producer, prompts_topic, job, bodies, secret)
    start = time.time()
    await wait_results(rig, job, len(bodies), rig.inference, router)
    times = await finished(rig, job)
    span = max(f for _, f in times) - start
    log(f"pipeline: {len(bodies) / span:.0f} prompts/s into Redis")
    return {"per_s": len(bodies) / span, "span_s": span, "results": len(times)}
