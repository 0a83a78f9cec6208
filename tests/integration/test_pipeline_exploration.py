"""Exploration through the real pipeline (broker, Redis, replay server, router and inference in-process): the
other arm's answers stored beside the results, counted in their own bucket, once, and the job done after both."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from schemas.messages import DeadLetter, PromptMessage, PromptPlan, RoutedMessage
from schemas.records import JobMeta, JobPlan
from tests.helpers import wait_until
from tests.integration.helpers import committed, produce, read_topic, running, sample_requests
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.integrity import new_secret, request_id, sign
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest
from workers.submit.jobs import summary, wait_for_job

pytestmark = pytest.mark.integration

N, EVERY = 24, 4  # 6 of the 24 prompts explored


async def publish_job(s: Settings, store: Store, job: str, requests: list[InputRequest], explored: set[str]) -> JobMeta:
    """Register and publish a job as the planner's submit would: plans on the explored prompts, all signed."""
    now = time.time()
    plan = JobPlan(explore=len(explored) / len(requests), explore_total=len(explored)) if explored else None
    meta = JobMeta(job_id=job, total=len(requests), source="t", submitted_at=now, plan=plan)
    rids = [request_id(job, r.custom_id) for r in requests]
    secret = new_secret()
    await store.register_job(meta, rids, secret)
    items = []
    for rid, r in zip(rids, requests, strict=True):
        p = PromptPlan(explore=True) if r.custom_id in explored else None
        msg = PromptMessage(
            request_id=rid, job_id=job, custom_id=r.custom_id, line=r.line, body=r.body, submitted_at=now, plan=p
        )
        items.append((rid.encode(), sign(msg, secret).model_dump_json().encode()))
    await produce(s.kafka_bootstrap or "", s.topics.prompts, items)
    assert await store.start_job(job) == "running"
    return meta


async def test_explored_prompts_are_answered_by_both_arms_and_counted_apart(
    settings: Settings, artifact: Path, redis: Redis, unique: str
) -> None:
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], settings.partitions)
    store = Store(redis)
    requests = sample_requests(N)
    explored = {r.custom_id for r in requests[::EVERY]}
    bodies = {r.custom_id: r.body for r in requests}
    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ) as workers:
        plain = await publish_job(settings, store, f"job-pl-{unique}", requests, set())
        job = f"job-ex-{unique}"
        meta = await publish_job(settings, store, job, requests, explored)
        plain_totals = await wait_for_job(store, plain, check=workers.check, timeout_s=120)
        totals = await wait_for_job(store, meta, check=workers.check, timeout_s=120)
        assert (await store.job_meta(job)).state == "done"  # type: ignore[union-attr]

        # the routed job is the job without exploration: same routes, same tokens prompt by prompt (replay)
        assert (totals.completed, totals.failed) == (N, 0)
        assert totals.routes == plain_totals.routes and totals.escalations == plain_totals.escalations
        results = {r.custom_id: r async for r in store.results(job)}
        before = {r.custom_id: r async for r in store.results(plain.job_id)}
        for cid, r in results.items():
            assert (r.route.route, r.usage) == (before[cid].route.route, before[cid].usage), cid
            assert r.route.explore is (cid in explored)

        # one exploration record per explored prompt, the other arm, its tokens in the exploration bucket only
        records = {e.custom_id: e async for e in store.explorations(job)}
        assert set(records) == explored
        for cid, e in records.items():
            assert e.status == "completed" and e.route.explore
            assert e.route.route != results[cid].route.route
            assert e.route.use_reasoning is (e.route.route == "reasoning")
            assert e.route.category == results[cid].route.category
            assert e.body == bodies[cid]  # the prompt itself, for fit --from-job
        for route in ("reasoning", "direct"):
            mine = [e for e in records.values() if e.route.route == route]
            x = totals.exploration[route]
            assert (x.requests, x.completed, x.failed) == (len(mine), len(mine), 0)
            assert x.prompt_tokens == sum(e.usage.prompt_tokens for e in mine)
            assert x.completion_tokens == sum(e.usage.completion_tokens for e in mine)
            assert x.reasoning_tokens == sum(e.usage.reasoning_tokens for e in mine)
        assert sum(e.usage.completion_tokens for e in records.values()) > 0
        assert all(x.requests == 0 for x in plain_totals.exploration.values())
        s = await summary(store, meta, wall_s=1.0)
        assert s["exploration"]["total"] == len(explored) and s["exploration"]["pending"] == 0
        assert s["tokens"]["completion"] == sum(r.usage.completion_tokens for r in results.values())
        assert sum(v["completion"] for v in s["exploration"]["routes"].values()) == sum(
            e.usage.completion_tokens for e in records.values()
        )

        # every routed message and shadow is committed: N + N + 6 on the inference side
        n = settings.partitions

        async def answered(count: int) -> bool:
            workers.check()
            got = await committed(kc.bootstrap, settings.inference.group, [t.reasoning, t.direct], n)
            return sum(v for v in got.values() if v > 0) == count

        await wait_until(lambda: answered(2 * N + len(explored)), 30, "every routed and shadow message committed")

        # redelivery: the same shadow published twice more counts once; a forged shadow is dead-lettered
        shadow_records = []
        for topic in (t.reasoning, t.direct):
            everything = await read_topic_all(kc.bootstrap, topic, n)
            shadow_records += [(topic, m) for m in everything if RoutedMessage.model_validate_json(m.value).shadow]
        assert len(shadow_records) == len(explored)
        topic, again = shadow_records[0]
        shadow = RoutedMessage.model_validate_json(again.value)
        forged_prompt = shadow.prompt.model_copy(
            update={"body": shadow.prompt.body.model_copy(update={"max_tokens": 5})}
        )
        forged = shadow.model_copy(update={"prompt": forged_prompt})
        await produce(
            kc.bootstrap,
            topic,
            [(again.key, again.value), (again.key, again.value), (again.key, forged.model_dump_json().encode())],
        )
        await wait_until(lambda: answered(2 * N + len(explored) + 3), 60, "the redelivered shadows committed")
        assert await store.totals(job) == totals
        assert {e.custom_id: e async for e in store.explorations(job)} == records
        dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, 1)]
        assert dead[0].stage == "inference" and dead[0].request_id == shadow.prompt.request_id
        assert "bad_mac" in dead[0].reason or "MAC" in dead[0].reason, dead[0].reason


async def read_topic_all(bootstrap: str, topic: str, partitions: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic now (from the beginning up to its end offsets)."""
    consumer: AIOKafkaConsumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(records)
        return out
    finally:
        await consumer.stop()


@pytest.mark.timeout(600)
async def test_exploration_counts_once_through_inference_crashes_between_store_and_commit(
    settings: Settings, artifact: Path, redis: Redis, unique: str, tmp_path: Path
) -> None:
    """The inference worker dies (SIGKILL-like exit 137) after a Redis write and before its offset commit, at
    least twice: every result and every shadow answer is counted exactly once."""
    from loadgen.procs import Procs, settings_env
    from tests.integration.helpers import assert_exact_totals, restart_until_done

    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], settings.partitions)
    store = Store(redis)
    requests = sample_requests(40)
    sampled = {r.custom_id for i, r in enumerate(requests) if i % 4 == 0}  # 10 of 40
    procs = Procs(tmp_path, settings_env(settings))
    procs.start("router", "router")
    procs.start("inference", "inference", THINKROUTE_CRASH_POINTS="after_store=9")
    crashes = iter(["after_store=13", "after_store=7", ""])
    try:
        meta = await publish_job(settings, store, f"job-xcrash-{unique}", requests, sampled)

        async def finished() -> bool:
            m = await store.job_meta(meta.job_id)
            return m is not None and m.state == "done"

        restarts = await restart_until_done(procs, crashes, finished, "the explored job to finish through crashes")
        assert restarts >= 2 and procs.exits.count(("inference", 137)) >= 2
        await assert_exact_totals(store, meta.job_id, 40)
        totals = await store.totals(meta.job_id)
        explored = [e async for e in store.explorations(meta.job_id)]
        assert sorted(e.custom_id for e in explored) == sorted(sampled)
        for route in ("reasoning", "direct"):
            mine = [e for e in explored if e.route.route == route]
            bucket = totals.exploration[route]
            assert (bucket.requests, bucket.completed) == (len(mine), len(mine))
            assert bucket.completion_tokens == sum(e.usage.completion_tokens for e in mine)
            assert bucket.prompt_tokens == sum(e.usage.prompt_tokens for e in mine)
    finally:
        procs.stop_all()
