"""Integrity of jobs through the real pipeline: only the submitter's prompts count, and a submit is all or
nothing (a line that cannot be published is refused up front; a broker failure midway fails the job)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from loadgen.procs import settings_env
from schemas.batch import ChatBody, ChatMessage
from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from tests.helpers import ROOT
from tests.integration.helpers import assert_exact_totals, read_topic, running, sample_requests, submit_requests
from workers.errors import BadInput
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.integrity import request_id
from workers.store.jobstore import JOBS_INDEX, Store, done_key, ids_key, meta_key, totals_key
from workers.submit.batchfile import InputRequest
from workers.submit.jobs import SubmitFailed, submit, summary, wait_for_job
from workers.submit.output import write_results

pytestmark = pytest.mark.integration
REJECTED = re.compile(r"^rejected \((\w+)\): ")


def workers(s: Settings, artifact: Path) -> tuple[Any, Any]:
    return lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)


def wire(prompts: list[PromptMessage]) -> list[tuple[bytes | None, bytes]]:
    return [(p.request_id.encode(), p.model_dump_json().encode()) for p in prompts]


async def test_only_the_submitters_prompts_count(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path, unique: str
) -> None:
    kc, t = kafka_config(settings), settings.topics
    requests = sample_requests(20)
    store = Store(redis)
    async with running(*workers(settings, artifact)) as w:
        meta = await submit_requests(settings, store, requests, "integrity")
        job, ghost = meta.job_id, f"job-ghost-{unique}"
        legit = [PromptMessage.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.prompts, 20)]
        victim, other = legit[0], legit[1]
        altered = victim.body.model_copy(update={"messages": [ChatMessage(role="user", content="Say PWNED.")]})
        attacks = {  # what an attacker who can write to the prompts topic (but not read Redis) can send
            "unregistered": victim.model_copy(update={"custom_id": "extra", "request_id": request_id(job, "extra")}),
            "bad_request_id": victim.model_copy(update={"request_id": other.request_id}),
            "unknown_job": victim.model_copy(
                update={"job_id": ghost, "request_id": request_id(ghost, victim.custom_id)}
            ),
            "bad_mac": victim.model_copy(update={"body": altered}),
            "unsigned": other.model_copy(update={"body": altered, "mac": None}),
        }
        await produce_attacks(kc.bootstrap, t.prompts, list(attacks.values()))
        dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, 5, 120)]
        totals = await wait_for_job(store, meta, check=w.check, timeout_s=120)
        w.check()

    letters = {m.group(1): d for d in dead if (m := REJECTED.match(d.reason))}
    assert set(letters) == set(attacks) and len(dead) == len(attacks)
    for code, d in letters.items():
        assert (d.stage, d.error, d.request_id, d.job_id) == ("inference", "RejectedRequest", *ids(attacks[code]))
        assert d.topic in (t.reasoning, t.direct)
        assert RoutedMessage.model_validate_json(base64.b64decode(d.value_b64)).prompt == attacks[code]
    assert (totals.completed, totals.failed) == (20, 0)
    results = await assert_exact_totals(store, job, completed=20)
    assert sorted(r.custom_id for r in results) == sorted(r.custom_id for r in requests)
    out = tmp_path / "results.jsonl"
    assert await write_results(store, job, out) == 20
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == [r.custom_id for r in requests]
    s = await summary(store, meta)
    assert (s["state"], s["completed"], s["pending"]) == ("done", 20, 0)
    assert not await redis.exists(meta_key(ghost), done_key(ghost), totals_key(ghost))


def ids(p: PromptMessage) -> tuple[str, str]:
    return p.request_id, p.job_id


async def produce_attacks(bootstrap: str, topic: str, prompts: list[PromptMessage]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in wire(prompts):
            await (await producer.send(topic, value, key=key))
    finally:
        await producer.stop()


class BrokenProducer:
    """A real producer whose sends fail after the first ``n``, as when the broker goes away mid-submit."""

    def __init__(self, inner: AIOKafkaProducer, n: int) -> None:
        self.inner, self.n, self.sent = inner, n, 0

    def __getattr__(self, name: str) -> Any:  # its limits (max_request_size) are the real producer's
        return getattr(self.inner, name)

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        if self.sent >= self.n:
            raise KafkaConnectionError("connection to the broker lost (test)")
        self.sent += 1
        return await self.inner.send(topic, value, key=key)


async def submit_through(s: Settings, store: Store, requests: list[InputRequest], n: int, job_id: str) -> int:
    """Submit through a producer that fails after ``n`` sends; returns how many it sent."""
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    producer = make_producer(kc)
    await producer.start()
    broken = BrokenProducer(producer, n)
    try:
        await submit(broken, store, t.prompts, requests, "t", job_id=job_id)  # type: ignore[arg-type]
    finally:
        await producer.stop()
    return broken.sent


async def test_a_line_over_the_limit_is_refused_before_anything_is_recorded(
    settings: Settings, redis: Redis, unique: str
) -> None:
    requests = sample_requests(5)
    huge = ChatBody(messages=[ChatMessage(role="user", content="x" * (1024 * 1024))])
    requests[2] = InputRequest(line=3, custom_id="huge", body=huge)
    job = f"job-big-{unique}"
    with pytest.raises(BadInput, match=r"^line 3: the prompt message is \d+ bytes, over the limit of 1032192 bytes"):
        await submit_through(settings, Store(redis), requests, 10**9, job)
    assert not await redis.exists(meta_key(job), ids_key(job)) and await redis.zscore(JOBS_INDEX, job) is None


async def test_a_submit_that_fails_midway_leaves_a_failed_job_that_counts_nothing(
    settings: Settings, artifact: Path, redis: Redis, unique: str
) -> None:
    kc, t = kafka_config(settings), settings.topics
    store, requests = Store(redis), sample_requests(20)
    with pytest.raises(SubmitFailed) as info:
        await submit_through(settings, store, requests, 8, f"job-half-{unique}")
    job = info.value.job_id
    assert job == f"job-half-{unique}" and str(info.value).startswith(f"job {job} failed: publishing failed: ")
    assert "KafkaConnectionError" in info.value.reason and info.value.exit_code == 3  # the broker went away
    meta = await store.job_meta(job)
    assert meta is not None and (meta.state, meta.failed_reason, meta.total) == ("failed", info.value.reason, 20)

    # the 8 prompts that were published reach the workers, which refuse them
    async with running(*workers(settings, artifact)) as w:
        dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, 8, 120)]
        w.check()
    assert sorted(d.request_id or "" for d in dead) == sorted(request_id(job, r.custom_id) for r in requests[:8])
    assert all(d.reason.startswith("rejected (failed_job): ") and d.stage == "inference" for d in dead)
    totals = await store.totals(job)
    assert (totals.completed, totals.failed, sum(r.requests for r in totals.routes.values())) == (0, 0, 0)
    assert [r async for r in store.results(job)] == []
    s = await summary(store, meta)
    assert (s["state"], s["failed_reason"], s["pending"], s["completed"]) == ("failed", info.value.reason, 0, 0)

    env = settings_env(settings) | {"PYTHONPATH": str(ROOT)}
    for args in (["--json"], []):
        argv = [sys.executable, "-m", "workers", "status", job, *args]
        proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        if args:
            shown = json.loads(proc.stdout)
            assert (shown["state"], shown["failed_reason"], shown["pending"]) == ("failed", info.value.reason, 0)
        else:
            assert "0 pending of 20" in proc.stdout and "(failed)" in proc.stdout
            assert "failed: publishing failed: KafkaConnectionError" in proc.stdout


def test_a_line_pydantic_cannot_serialise_is_refused_with_its_number(
    settings: Settings, tmp_path: Path, redis_server: Any
) -> None:
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": "lone \\ud800 surrogate"}\n')
    env = settings_env(settings) | {"PYTHONPATH": str(ROOT)}
    before = jobs_in_redis(settings)
    proc = subprocess.run(
        [sys.executable, "-m", "workers", "submit", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    # refused by the reader where it knows surrogates, else by submit's encoding: line 2 either way
    *_, last = proc.stderr.splitlines()
    assert last.startswith("error: ") and "line 2: " in proc.stderr and "nothing submitted" in last
    assert proc.stdout == "" and jobs_in_redis(settings) == before


def jobs_in_redis(s: Settings) -> int:
    assert s.redis_url is not None
    client = SyncRedis.from_url(s.redis_url.get_secret_value())
    try:
        return int(client.zcard(JOBS_INDEX))  # type: ignore[arg-type]
    finally:
        client.close()
