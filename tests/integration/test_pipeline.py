"""A real job end to end: real broker, real Redis, replay LLM server, router and inference in-process."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from schemas.messages import DeadLetter
from schemas.records import JobMeta
from tests.helpers import wait_until
from tests.integration.helpers import SAMPLE, committed, produce, read_topic, running, sample_requests, submit_requests
from workers.classifier.model import Classifier
from workers.data import QWEN3_THINK, read_jsonl
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config
from workers.router.policy import load_policy
from workers.router.serve import serve_router
from workers.router.text import prompt_text
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.jobs import summary, wait_for_job
from workers.submit.output import write_results

pytestmark = pytest.mark.integration


async def test_job_end_to_end(settings: Settings, artifact: Path, redis: Redis, tmp_path: Path) -> None:
    kc, t = kafka_config(settings), settings.topics
    assert len(sample_requests()) == 200
    requests = sample_requests(60)
    store = Store(redis)
    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ) as workers:
        meta = await submit_requests(settings, store, requests, SAMPLE.name)
        totals = await wait_for_job(store, meta, check=workers.check, timeout_s=120)
        assert (totals.completed, totals.failed) == (60, 0)

        # routes equal the policy's decisions on the classifier's own output
        classifier = Classifier.load(artifact)
        policy = load_policy(None, classifier.labels)
        expected = {
            r.custom_id: policy.decide(c, r.body.model, settings.default_model, classifier.version)
            for r, c in zip(requests, classifier.classify([prompt_text(r.body) for r in requests]), strict=True)
        }
        results = {r.custom_id: r async for r in store.results(meta.job_id)}
        assert set(results) == set(expected)
        for cid, res in results.items():
            assert res.route.route == expected[cid].route
            assert res.route.category == expected[cid].category
            assert abs(res.route.confidence - expected[cid].confidence) < 1e-4

        # token sums: totals equal the per-request records, and the Qwen3-recorded questions carry
        # exactly the recorded token counts of the mode they were routed to
        for route in ("reasoning", "direct"):
            mine = [r for r in results.values() if r.route.route == route]
            rt = totals.routes[route]
            assert rt.requests == len(mine)
            assert rt.prompt_tokens == sum(r.usage.prompt_tokens for r in mine)
            assert rt.completion_tokens == sum(r.usage.completion_tokens for r in mine)
            assert rt.reasoning_tokens == sum(r.usage.reasoning_tokens for r in mine)
        recorded = {f"mmlu-pro-{q['question_id']}": q for q in read_jsonl(QWEN3_THINK)}
        checked = 0
        for cid, res in results.items():
            if cid in recorded:
                mode = "think" if res.route.use_reasoning else "nothink"
                assert res.usage.completion_tokens == recorded[cid][f"{mode}_n_tokens"], cid
                checked += 1
        assert checked >= 1
        assert totals.routes["reasoning"].reasoning_tokens > 0
        assert sum(1 for r in results.values() if r.route.use_reasoning) == totals.routes["reasoning"].requests

        # offsets: the router commits every prompt, the inference group every routed message. Commits follow
        # the work (the router's last batch commits after its acks, possibly after inference stored it)
        n = settings.partitions

        async def all_committed() -> bool:
            workers.check()
            routed = await committed(kc.bootstrap, settings.router.group, [t.prompts], n)
            answered = await committed(kc.bootstrap, settings.inference.group, [t.reasoning, t.direct], n)
            return sum(v for v in routed.values() if v > 0) == 60 and sum(v for v in answered.values() if v > 0) == 60

        await wait_until(all_committed, 30, "both groups to commit every message")

        # a redelivered routed message changes nothing (same request id, counted once)
        again = next(iter(results.values()))
        topic = t.reasoning if again.route.route == "reasoning" else t.direct
        routed_msgs = await read_topic(kc.bootstrap, topic, 1)
        await produce(kc.bootstrap, topic, [(routed_msgs[0].key, routed_msgs[0].value)])

        async def redelivery_consumed() -> bool:
            workers.check()
            got = await committed(kc.bootstrap, settings.inference.group, [t.reasoning, t.direct], n)
            return sum(v for v in got.values() if v > 0) == 61

        await wait_until(redelivery_consumed, 60, "the redelivered message to be committed")
        after = await store.totals(meta.job_id)
        assert after == totals

        s = await summary(store, meta, wall_s=1.0)
        assert s["routes"]["reasoning"] + s["routes"]["direct"] == 60
        assert s["tokens"]["completion"] == sum(r.usage.completion_tokens for r in results.values())
        assert 0 < s["latency_s"]["p50"] <= s["latency_s"]["p95"] <= s["latency_s"]["p99"]
        out = tmp_path / "results.jsonl"
        assert await write_results(store, meta.job_id, out) == 60
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert [x["custom_id"] for x in lines] == [r.custom_id for r in requests]
        first = lines[0]
        assert first["response"]["status_code"] == 200 and first["error"] is None
        assert first["response"]["body"]["choices"][0]["message"]["content"]
        assert first["route"]["category"] == expected[first["custom_id"]].category
        assert {"category", "confidence", "use_reasoning", "model", "policy_version"} <= set(first["route"])


async def test_bad_prompt_messages_are_dead_lettered_and_the_router_keeps_going(
    settings: Settings, artifact: Path, redis: Redis
) -> None:
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], 1)
    bad = [
        (b"k1", b"{not json"),
        (b"k2", b""),
        (b"k3", json.dumps({"v": 2, "request_id": "x"}).encode()),
        (None, "caf\xe9".encode("latin-1")),
    ]
    requests = sample_requests(3)
    store = Store(redis)
    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ) as workers:
        await produce(kc.bootstrap, t.prompts, bad)
        meta: JobMeta = await submit_requests(settings, store, requests, "x")
        totals = await wait_for_job(store, meta, check=workers.check, timeout_s=60)
        assert totals.completed == 3
        dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, 4)]
        assert sorted(base64.b64decode(d.value_b64) for d in dead) == sorted(v for _, v in bad)
        assert all(d.stage == "router" and d.topic == t.prompts and d.reason for d in dead)
        by_key = {d.key: d for d in dead}
        assert "JSON" in by_key["k1"].reason and "empty" in by_key["k2"].reason
        assert by_key["k3"].error == "ValidationError"
        results = [r async for r in store.results(meta.job_id)]
        assert sorted(r.custom_id for r in results) == sorted(r.custom_id for r in requests)
