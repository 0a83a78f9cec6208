"""``python -m loadgen chaos``: a sustained job with faults injected on a seeded schedule.

Two routers and two inference workers run as processes under a supervisor that restarts whatever dies
(as compose's restart policy would). While the job runs, the schedule SIGKILLs routers and inference
workers, SIGTERMs inference workers, SIGKILLs Redis (persistence on: appendfsync always) and restarts
it, and switches the replay LLM between healthy and misbehaving (5xx, 429, hangs, dropped connections).
A share of prompts carries a poison marker that the backend always rejects: those must end as failed
records plus dead letters. At the end it prints what was submitted, completed, failed, dead-lettered,
lost and duplicated (both must be 0), and the largest worker RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from loadgen.bench_common import rss_mb
from loadgen.procs import Procs, settings_env
from schemas.messages import DeadLetter
from workers.classifier.cache import ensure_artifact
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.local.services import Service, start_broker, start_redis, start_replay
from workers.settings import InferenceSettings, RouterSettings, Settings
from workers.store.jobstore import Store, done_key
from workers.submit.batchfile import InputRequest, read_batch
from workers.submit.jobs import submit

SAMPLE = Path(__file__).resolve().parent / "samples" / "mmlu_pro_200.jsonl"
MARKER = "CHAOS-POISON"
LLM_FAULTS = [
    {},
    {"share_5xx": 0.2, "share_429": 0.1, "retry_after_s": 0.2},
    {"share_reset": 0.15, "share_timeout": 0.05, "hang_s": 3.0},
    {"share_slow": 0.3, "slow_s": 0.5},
]
KINDS = {"router-0": "router", "router-1": "router", "inference-0": "inference", "inference-1": "inference"}


def prompts(n: int, poison_every: int) -> list[InputRequest]:
    base, _ = read_batch(SAMPLE, 10**9)
    out = []
    for i in range(n):
        r = base[i % len(base)]
        body = r.body
        if poison_every and i % poison_every == poison_every - 1:
            msg = body.messages[-1]
            body = body.model_copy(update={"messages": [msg.model_copy(update={"content": f"{msg.content} {MARKER}"})]})
        out.append(InputRequest(i + 1, f"chaos-{i}", body))
    return out


def setup(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Service, Service, Service]:
    cache = Path(args.cache_dir).expanduser()
    artifact = Path(args.artifact) if args.artifact else ensure_artifact(cache, progress=False)
    broker = start_broker(work / "broker")
    redis_svc = start_redis(work / "redis", persist=True, password="chaos")
    extra = ["--fault-fail-marker", MARKER, "--fault-hang-s", "3"]
    replay = start_replay(work / "replay", time_scale=args.time_scale, extra=extra)
    return cache, artifact, broker, redis_svc, replay


async def run(
    args: argparse.Namespace, work: Path, services: tuple[Path, Path, Service, Service, Service]
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    cache, artifact, broker, redis_svc, replay = services
    redis_url = f"redis://:chaos@{redis_svc.address}/0"
    s = Settings(
        kafka_bootstrap=broker.address,
        redis_url=SecretStr(redis_url),
        llm_base_url=f"http://{replay.address}/v1",
        partitions=4,
        session_timeout_ms=6000,
        cache_dir=cache,
        router=RouterSettings(batch_max=16, batch_wait_ms=10, artifact_dir=artifact),
        inference=InferenceSettings(
            concurrency=32, max_attempts=6, backoff_base_s=0.1, backoff_max_s=2.0, read_timeout_s=1.5
        ),
    )
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    procs = Procs(work / "workers", settings_env(s, THINKROUTE_METRICS_PORT="0"))
    for name, kind in KINDS.items():
        procs.start(name, kind)
    redis = Redis.from_url(redis_url, socket_timeout=5)
    store = Store(redis)
    http = httpx.AsyncClient(timeout=5)
    events: dict[str, int] = {}
    max_rss = 0.0
    started = time.monotonic()
    requests = prompts(args.prompts, args.poison_every)
    producer = make_producer(kc)
    await producer.start()
    try:
        meta = await submit(producer, store, t.prompts, requests, source="chaos")
        next_fault = time.monotonic() + rng.uniform(1, args.fault_every_s)
        next_report = time.monotonic() + 10
        while True:
            procs.restart_dead(KINDS)
            max_rss = max([max_rss, *(rss_mb(p.proc.pid) for p in procs.procs.values())])
            try:
                totals = await store.totals(meta.job_id)
                done = totals.completed + totals.failed
                if done >= meta.total:
                    break
                if time.monotonic() >= next_report:
                    print(f"chaos: {done}/{meta.total} done, faults {events}", file=sys.stderr, flush=True)
                    next_report = time.monotonic() + 10
            except Exception:  # Redis is being restarted by the schedule
                pass
            if time.monotonic() - started > args.timeout_s:
                break
            if time.monotonic() >= next_fault:
                redis_svc = await inject(rng, procs, redis_svc, replay, http, events, work)
                next_fault = time.monotonic() + rng.uniform(args.fault_every_s / 3, args.fault_every_s)
            await asyncio.sleep(0.2)
        await http.post(f"http://{replay.address}/faults", json={"fail_marker": MARKER})
        wall = time.monotonic() - started
        return await report(
            store,
            redis,
            kc.bootstrap,
            t.dead,
            meta.total,
            meta.job_id,
            events,
            max_rss,
            wall,
            (await http.get(f"http://{replay.address}/stats")).json(),
        )
    finally:
        await producer.stop()
        await http.aclose()
        await redis.aclose()
        procs.stop_all()
        for svc in (replay, redis_svc, broker):
            svc.stop()


async def inject(
    rng: random.Random,
    procs: Procs,
    redis_svc: Service,
    replay: Service,
    http: httpx.AsyncClient,
    events: dict[str, int],
    work: Path,
) -> Service:
    action = rng.choice(
        ["kill_router", "kill_inference", "term_inference", "restart_redis", "llm_faults", "llm_faults"]
    )
    events[action] = events.get(action, 0) + 1
    if action == "kill_router":
        procs.kill(rng.choice(["router-0", "router-1"]))
    elif action == "kill_inference":
        procs.kill(rng.choice(["inference-0", "inference-1"]))
    elif action == "term_inference":
        procs.procs[rng.choice(["inference-0", "inference-1"])].terminate()
    elif action == "restart_redis":
        redis_svc.proc.kill()
        redis_svc.proc.wait(10)
        redis_svc = start_redis(work / "redis", redis_svc.port, persist=True, password="chaos")
    else:
        await http.post(
            f"http://{replay.address}/faults",
            json={**rng.choice(LLM_FAULTS), "fail_marker": MARKER, "seed": rng.randint(0, 999)},
        )
    return redis_svc


async def report(
    store: Store,
    redis: Redis,
    bootstrap: str,
    dead_topic: str,
    submitted: int,
    job: str,
    events: dict[str, int],
    max_rss: float,
    wall: float,
    llm_stats: dict[str, Any],
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    totals = await store.totals(job)
    unique = int(await redis.scard(done_key(job)))
    results = [r async for r in store.results(job)]
    counted = totals.completed + totals.failed
    token_sum = sum(r.usage.completion_tokens for r in results)
    counter_sum = sum(totals.routes[r].completion_tokens for r in totals.routes)
    consumer = AIOKafkaConsumer(
        dead_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, fetch_max_wait_ms=50
    )
    await consumer.start()
    dead_ids: set[str] = set()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(dead_ids) < totals.failed:
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                for rec in recs:
                    letter = DeadLetter.model_validate_json(rec.value)
                    if letter.request_id:
                        dead_ids.add(letter.request_id)
    finally:
        await consumer.stop()
    return {
        "submitted": submitted,
        "completed": totals.completed,
        "failed": totals.failed,
        "dead_lettered": len(dead_ids),
        "lost": submitted - unique,
        "duplicated": counted - unique,
        "token_counter_mismatch": counter_sum - token_sum,
        "max_rss_mb": round(max_rss, 1),
        "wall_s": round(wall, 1),
        "faults_injected": events,
        "llm_faults": llm_stats.get("faults", {}),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadgen chaos", description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--poison-every", type=int, default=50, help="every Nth prompt always fails at the LLM")
    p.add_argument("--fault-every-s", type=float, default=12.0, help="longest spacing of scheduled faults")
    p.add_argument("--time-scale", type=float, default=0.01, help="replay latency multiplier")
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--cache-dir", default=str(Settings().cache_dir))
    p.add_argument("--artifact", default=None, help="classifier artefact dir (default: the cached build)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="thinkroute-chaos-"))
    result = asyncio.run(run(args, work, setup(args, work)))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    ok = (
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["completed"] + result["failed"] == result["submitted"]
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
