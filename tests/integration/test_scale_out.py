"""Scale-out: 3 router and 2 inference processes in their two consumer groups share one job, and every
prompt is routed and answered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.helpers import ROOT, wait_until
from tests.integration.helpers import committed
from tests.integration.test_metrics import scrape, total
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.local.services import Service, free_port, spawn
from workers.settings import Settings
from workers.store.jobstore import Store, done_key
from workers.submit.batchfile import read_batch
from workers.submit.jobs import submit, wait_for_job

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "loadgen" / "samples" / "mmlu_pro_200.jsonl"
ROUTERS, INFERENCE = 3, 2
PROMPT_PARTITIONS, ROUTED_PARTITIONS = 6, 4


def worker_env(s: Settings) -> dict[str, str]:
    assert s.kafka_bootstrap and s.redis_url and s.llm_base_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    t = s.topics
    env.update(
        {
            "THINKROUTE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "THINKROUTE_REDIS_URL": s.redis_url.get_secret_value(),
            "THINKROUTE_LLM_BASE_URL": s.llm_base_url,
            "THINKROUTE_TOPICS__PROMPTS": t.prompts,
            "THINKROUTE_TOPICS__REASONING": t.reasoning,
            "THINKROUTE_TOPICS__DIRECT": t.direct,
            "THINKROUTE_TOPICS__DEAD": t.dead,
            "THINKROUTE_ROUTER__GROUP": s.router.group,
            "THINKROUTE_ROUTER__BATCH_MAX": str(s.router.batch_max),
            "THINKROUTE_ROUTER__INTRA_OP_THREADS": "1",
            "THINKROUTE_INFERENCE__GROUP": s.inference.group,
            "THINKROUTE_INFERENCE__CONCURRENCY": str(s.inference.concurrency),
            "THINKROUTE_SESSION_TIMEOUT_MS": str(s.session_timeout_ms),
            "THINKROUTE_CACHE_DIR": str(s.cache_dir),
            "THINKROUTE_METRICS_HOST": "127.0.0.1",
        }
    )
    return env


async def test_replicas_share_one_job_exactly_once(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path
) -> None:
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts], PROMPT_PARTITIONS)
    await ensure_topics(kc, [t.reasoning, t.direct, t.dead], ROUTED_PARTITIONS)
    env = worker_env(settings)
    procs: dict[str, tuple[Service, str]] = {}
    for kind, count in (("router", ROUTERS), ("inference", INFERENCE)):
        for n in range(count):
            port = free_port()
            argv = [sys.executable, "-m", "workers", "worker", kind]
            extra = {f"THINKROUTE_{kind.upper()}__METRICS_PORT": str(port)}
            svc = spawn(f"{kind}-{n}", argv, tmp_path, port, env={**env, **extra})
            procs[svc.name] = (svc, f"http://127.0.0.1:{port}/metrics")

    def check() -> None:
        for svc, _ in procs.values():
            if not svc.alive():
                raise AssertionError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.log_tail(40)}")

    async def scrape_all() -> dict[str, dict]:  # type: ignore[type-arg]
        return {name: await scrape(url) for name, (_, url) in procs.items()}

    async def groups_settled() -> bool:
        # every process owns partitions, and together they own all of them: no member still joining
        check()
        try:
            m = await scrape_all()
        except httpx.TransportError:
            return False
        owned = {name: total(x, "thinkroute_assigned_partitions") for name, x in m.items()}
        routers = [owned[f"router-{n}"] for n in range(ROUTERS)]
        inference = [owned[f"inference-{n}"] for n in range(INFERENCE)]
        return (
            min(routers) > 0
            and sum(routers) == PROMPT_PARTITIONS
            and min(inference) > 0
            and sum(inference) == 2 * ROUTED_PARTITIONS
        )

    requests, _ = read_batch(SAMPLE, settings.max_prompt_chars)
    n_req = len(requests)
    store = Store(redis)
    producer = make_producer(kc)
    await producer.start()
    try:
        await wait_until(groups_settled, 120, "3 routers and 2 inference workers to share the partitions")
        meta = await submit(producer, store, t.prompts, requests, source=SAMPLE.name)
        totals = await wait_for_job(store, meta, check=check, timeout_s=180)
        assert (totals.completed, totals.failed) == (n_req, 0)
        assert totals.routes["reasoning"].requests + totals.routes["direct"].requests == n_req
        assert await redis.scard(done_key(meta.job_id)) == n_req
        results = [r async for r in store.results(meta.job_id)]
        assert sorted(r.custom_id for r in results) == sorted(r.custom_id for r in requests)

        async def all_committed() -> bool:
            check()
            routed = await committed(kc.bootstrap, settings.router.group, [t.prompts], PROMPT_PARTITIONS)
            done = await committed(kc.bootstrap, settings.inference.group, [t.reasoning, t.direct], ROUTED_PARTITIONS)
            return sum(routed.values()) == n_req and sum(v for v in done.values() if v > 0) == n_req

        await wait_until(all_committed, 30, "both groups to commit every message")

        # the work was shared: each process did part of it, and the parts add up to the job exactly
        m = await scrape_all()
        routed = {
            f"router-{n}": total(m[f"router-{n}"], "thinkroute_reasoning_decisions_total") for n in range(ROUTERS)
        }
        answered = {
            f"inference-{n}": total(m[f"inference-{n}"], "thinkroute_requests_total", status="completed")
            for n in range(INFERENCE)
        }
        # a rebalance mid-job may route a batch twice (at least once, by design); Redis counts it once
        assert sum(routed.values()) >= n_req and min(routed.values()) > 0, routed
        assert sum(answered.values()) == n_req and min(answered.values()) > 0, answered
        for route in ("reasoning", "direct"):
            got = sum(total(m[name], "thinkroute_requests_total", route=route, status="completed") for name in answered)
            assert got == totals.routes[route].requests
    finally:
        await producer.stop()
        for svc, _ in procs.values():  # one SIGTERM each: drain, commit, exit 0 (a second one exits at once)
            if svc.alive():
                svc.proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, (svc, _) in procs.items():
            try:
                codes[name] = svc.proc.wait(30)
            except subprocess.TimeoutExpired:
                codes[name] = svc.stop(timeout=5, sig=signal.SIGKILL)
    assert codes == {name: 0 for name in procs}, codes
