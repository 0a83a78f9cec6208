"""Policy hot-swap mid-job: real broker, real Redis, replay server, router and inference in-process.

The job's 200 prompts are registered at once and published in three parts: the policy file is rewritten
(v1 -> v2, threshold moved) after the first part's results started to arrive, the second part is published
while the router picks the change up, the third once it has. Every request is answered exactly once, both
versions decided, and in routing order no v1 decision follows the first v2 one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis

from schemas.messages import PromptMessage, RoutedMessage
from schemas.records import JobMeta
from tests.helpers import wait_until
from tests.integration.helpers import (
    assert_exact_totals,
    committed,
    produce,
    read_topic,
    register,
    running,
    sample_requests,
)
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.integrity import request_id, sign
from workers.store.jobstore import Store
from workers.submit.jobs import wait_for_job

pytestmark = pytest.mark.integration

DEFAULT = Path(__file__).resolve().parents[2] / "workers" / "router" / "default_policy.yaml"
THRESHOLDS = {"v1": 0.707508, "v2": 0.3}


def write_policy(path: Path, version: str) -> None:
    doc = yaml.safe_load(DEFAULT.read_text("utf-8"))
    doc["version"] = version
    doc["reasoning"]["threshold"] = THRESHOLDS[version]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc), "utf-8")
    os.replace(tmp, path)  # as thinkroute fit writes it


async def test_policy_swapped_mid_job_loses_and_doubles_nothing(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.router.reload")
    policy = tmp_path / "policy.yaml"
    write_policy(policy, "v1")
    s = settings.model_copy(
        update={"router": settings.router.model_copy(update={"policy_path": policy, "policy_poll_s": 0.05})}
    )
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    requests = sample_requests(200)
    job = f"job-swap-{t.prompts}"
    meta = JobMeta(job_id=job, total=len(requests), source="swap", submitted_at=time.time())
    ids = [request_id(job, r.custom_id) for r in requests]
    store = Store(redis)
    secret = await register(store, meta, ids)
    encoded = [
        (
            rid.encode(),
            sign(
                PromptMessage(
                    request_id=rid,
                    job_id=job,
                    custom_id=r.custom_id,
                    line=r.line,
                    body=r.body,
                    submitted_at=meta.submitted_at,
                ),
                secret,
            )
            .model_dump_json()
            .encode(),
        )
        for rid, r in zip(ids, requests, strict=True)
    ]

    def swapped() -> bool:
        return any("policy v2 replaces v1" in rec.getMessage() for rec in caplog.records)

    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        await produce(kc.bootstrap, t.prompts, encoded[:100])

        async def some_stored() -> bool:
            w.check()
            return (await store.totals(job)).completed >= 20

        await wait_until(some_stored, 60, "the first results")
        write_policy(policy, "v2")
        await produce(kc.bootstrap, t.prompts, encoded[100:150])  # in flight while the router swaps

        async def seen() -> bool:
            w.check()
            return swapped()

        await wait_until(seen, 30, "the router to load v2")
        await produce(kc.bootstrap, t.prompts, encoded[150:])
        totals = await wait_for_job(store, meta, check=w.check, timeout_s=120)

        async def all_committed() -> bool:
            w.check()
            routed = await committed(kc.bootstrap, s.router.group, [t.prompts], s.partitions)
            answered = await committed(kc.bootstrap, s.inference.group, [t.reasoning, t.direct], s.partitions)
            return sum(max(v, 0) for v in routed.values()) == 200 and sum(max(v, 0) for v in answered.values()) == 200

        await wait_until(all_committed, 30, "both groups to commit every message")

    # exactly once: one result per request, the done set and the counters equal to them
    assert (totals.completed, totals.failed) == (200, 0)
    results = await assert_exact_totals(store, job, completed=200)
    assert sorted(r.request_id for r in results) == sorted(ids)
    assert sum(totals.routes[r].requests for r in ("reasoning", "direct")) == 200
    assert {r.route.policy_version for r in results} == {"v1", "v2"}

    # each decision is its version's: a score rule reasons iff score >= that version's threshold
    for r in results:
        d = r.route
        if d.reason.endswith("+score"):
            assert d.reasoning_score is not None
            assert d.use_reasoning == (d.reasoning_score >= THRESHOLDS[d.policy_version]), r.custom_id

    # routing order: every message routed once; no v1 decision after the first v2 decision
    n = {route: totals.routes[route].requests for route in ("reasoning", "direct")}
    routed = [
        RoutedMessage.model_validate_json(rec.value)
        for topic, route in ((t.reasoning, "reasoning"), (t.direct, "direct"))
        for rec in await read_topic(kc.bootstrap, topic, n[route])
    ]
    assert sorted(m.prompt.request_id for m in routed) == sorted(ids)
    first_v2 = min(m.routed_at for m in routed if m.route.policy_version == "v2")
    late_v1 = [m.prompt.custom_id for m in routed if m.route.policy_version == "v1" and m.routed_at > first_v2]
    assert late_v1 == []
    assert sum(m.route.policy_version == "v2" for m in routed) >= 50  # at least the part published after the swap
