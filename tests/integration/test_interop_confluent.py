"""Another Kafka client (librdkafka, through confluent-kafka) on the wire contract: it creates the topics,
produces prompt messages built from the published JSON Schema (raw bytes: key, no headers, JSON value, MAC
computed here from the README's description, not with ThinkRoute's code), and consumes the routed and
dead-letter topics, while the real router and inference worker run against the session broker and Redis.

What a producer needs first (README, "Producing from another client"): the job registered in Redis through
ThinkRoute (its total, request ids and a 32-byte secret), then each prompt signed with that secret, then the
job started once the broker acknowledged every prompt.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from schemas.records import JobMeta
from tests.helpers import ROOT
from tests.integration.helpers import SAMPLE, assert_exact_totals, running, sample_requests
from tests.integration.rdkafka import consume, create_topics, produce
from workers.inference.serve import serve_inference
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.integrity import new_secret
from workers.store.jobstore import Store
from workers.submit.encode import encode_prompts
from workers.submit.jobs import new_job_id, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROMPT_SCHEMA = json.loads((ROOT / "schemas" / "json" / "prompt_message.schema.json").read_text())
VALID = 24


def mac(secret: bytes, job_id: str, custom_id: str, line: int, submitted_at: float, body: dict[str, Any]) -> str:
    """The README's MAC, written from its text: HMAC-SHA256 with the job's secret over the compact JSON array
    [domain, job id, custom id, line, submitted_at, hex SHA-256 of the body's canonical JSON]."""
    canonical = json.dumps(_without_nulls(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    fields = ["thinkroute-prompt-mac-v1", job_id, custom_id, line, submitted_at, digest]
    return hmac.new(secret, json.dumps(fields, separators=(",", ":")).encode(), hashlib.sha256).hexdigest()


def _without_nulls(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_nulls(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_without_nulls(v) for v in doc]
    return doc


async def test_confluent_kafka_producer_and_consumer_on_a_running_pipeline(
    settings: Settings, artifact: Path, redis: Redis
) -> None:
    t, bootstrap, n = settings.topics, settings.kafka_bootstrap, settings.partitions
    assert bootstrap is not None
    validator = Draft202012Validator(PROMPT_SCHEMA)
    create_topics(bootstrap, [t.prompts, t.reasoning, t.direct, t.dead], n)

    # 1. register the job through ThinkRoute (total, request ids, secret), as the README says
    store, job, secret, now = Store(redis), new_job_id(), new_secret(), time.time()
    requests = sample_requests(VALID)
    lines = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:VALID]]  # the raw batch lines
    ids = [f"{job}/{line['custom_id']}" for line in lines]
    meta = JobMeta(job_id=job, total=VALID, source="librdkafka", submitted_at=now)
    await store.register_job(meta, ids, secret)

    # 2. the prompt messages, as plain JSON documents checked against the published schema
    docs: list[dict[str, Any]] = []
    for number, (line, rid) in enumerate(zip(lines, ids, strict=True), start=1):
        cid, body = line["custom_id"], line["body"]
        doc = {"v": 1, "request_id": rid, "job_id": job, "custom_id": cid, "line": number, "body": body}
        doc |= {"submitted_at": now, "mac": mac(secret, job, cid, number, now, body)}
        validator.validate(doc)
        docs.append(doc)
    # the wire bytes do not depend on the client: ours encode the same key and the same message
    ours = encode_prompts(job, requests, now, secret, 1024 * 1024)
    for (key, value), doc in zip(ours, docs, strict=True):
        assert key == doc["request_id"].encode()
        assert PromptMessage.model_validate_json(value) == PromptMessage.model_validate(doc)
    valid = [(d["request_id"].encode(), json.dumps(d).encode()) for d in docs]

    # invalid ones: not JSON, a schema version this release does not speak, a field the schema forbids, and a
    # well-formed prompt of the job that its submitter never registered (rejected by the inference worker)
    stray = {**docs[0], "custom_id": "stray", "request_id": f"{job}/stray"}
    stray["mac"] = mac(secret, job, "stray", stray["line"], now, stray["body"])
    invalid = {
        b"bad-json": b'{"v": 1, "request_id": ',
        b"bad-version": json.dumps({**docs[1], "v": 2}).encode(),
        b"bad-field": json.dumps({**docs[2], "priority": 9}).encode(),
        stray["request_id"].encode(): json.dumps(stray).encode(),
    }
    assert not validator.is_valid(json.loads(invalid[b"bad-version"]))
    assert not validator.is_valid(json.loads(invalid[b"bad-field"]))
    validator.validate(stray)

    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ) as workers:
        delivered = await asyncio.to_thread(produce, bootstrap, t.prompts, [*valid, *invalid.items()])
        assert all(m.headers() is None for m in delivered)
        # 3. every prompt acknowledged: start the job
        assert await store.start_job(job) in ("running", "done")
        totals = await wait_for_job(store, meta, check=workers.check, timeout_s=180)
        assert (totals.completed, totals.failed) == (VALID, 0)
        read = await asyncio.to_thread(consume, bootstrap, {t.dead: len(invalid)}, n)
        dead = {d.key: d for d in (DeadLetter.model_validate_json(m.value()) for m in read[t.dead]) if d.key}
        # the router routes the stray prompt (it is well formed); the inference worker rejects it there
        routed_n = {t.reasoning: totals.routes["reasoning"].requests, t.direct: totals.routes["direct"].requests}
        routed_n[dead[stray["request_id"]].topic] += 1
        read |= await asyncio.to_thread(consume, bootstrap, routed_n, n)

    # the routed topics: exactly the well-formed prompts, once each, unchanged, keyed by request id, no headers
    by_id = {d["request_id"]: d for d in [*docs, stray]}
    routed = {topic: [RoutedMessage.model_validate_json(m.value()) for m in read[topic]] for topic in routed_n}
    seen = [m.key().decode() for topic in routed_n for m in read[topic]]
    assert sorted(seen) == sorted(by_id)
    for topic, route in ((t.reasoning, "reasoning"), (t.direct, "direct")):
        for msg, rec in zip(read[topic], routed[topic], strict=True):
            assert msg.headers() is None and msg.key().decode() == rec.prompt.request_id
            assert rec.route.route == route
            assert rec.prompt == PromptMessage.model_validate(by_id[rec.prompt.request_id])

    # the dead-letter topic: exactly the invalid ones, each with its stage and reason and its original bytes
    assert all(m.headers() is None for m in read[t.dead])
    assert set(dead) == {key.decode() for key in invalid}
    for key in (b"bad-json", b"bad-version", b"bad-field"):  # the router's: the bytes produced here
        assert base64.b64decode(dead[key.decode()].value_b64) == invalid[key]
    assert "Invalid JSON" in dead["bad-json"].reason and dead["bad-json"].stage == "router"
    assert dead["bad-version"].error == "ValidationError" and dead["bad-version"].stage == "router"
    assert dead["bad-version"].reason == "v: Input should be 1"
    assert dead["bad-field"].error == "ValidationError" and dead["bad-field"].reason == "priority: unknown field"
    rejected = dead[stray["request_id"]]
    assert (rejected.stage, rejected.request_id) == ("inference", stray["request_id"])
    assert "unregistered" in rejected.reason and rejected.topic in (t.reasoning, t.direct)
    as_routed = RoutedMessage.model_validate_json(base64.b64decode(rejected.value_b64))  # the inference worker's
    assert as_routed.prompt == PromptMessage.model_validate(stray)

    # Redis: every valid request completed once, totals equal the per-request records' sums
    results = await assert_exact_totals(store, job, VALID)
    assert sorted(r.request_id for r in results) == sorted(ids)
    assert sum(r.usage.completion_tokens for r in results) > 0
