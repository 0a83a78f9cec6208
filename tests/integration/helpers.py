"""Kafka helpers for tests: committed offsets of a group, reading a topic, running workers in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.messages import PromptMessage, RoutedMessage
from schemas.records import JobMeta, RequestResult
from tests.helpers import wait_until
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.settings import Settings
from workers.store.integrity import new_secret, sign
from workers.store.jobstore import Store, done_key
from workers.submit.batchfile import InputRequest, read_batch
from workers.submit.jobs import submit

if TYPE_CHECKING:
    from loadgen.procs import Procs


async def committed(bootstrap: str, group: str, topics: list[str], partitions: int) -> dict[tuple[str, int], int]:
    """Committed offset per (topic, partition); -1 where nothing is committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        got = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {(tp.topic, tp.partition): (got[tp].offset if tp in got else -1) for tp in tps}
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    """The first ``count`` records of a topic (from the earliest offset), or fail after ``timeout``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend(records)
    finally:
        await consumer.stop()
    return out


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futs = [await producer.send(topic, value, key=key) for key, value in items]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


class Workers:
    def __init__(self, stops: list[asyncio.Event], tasks: list[asyncio.Task[None]]) -> None:
        self.stops = stops
        self.tasks = tasks

    def check(self) -> None:
        """Raise the error of a worker that died (so a test fails at once instead of timing out)."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError("a worker died") from task.exception()


@contextlib.asynccontextmanager
async def running(*factories: Any) -> AsyncIterator[Workers]:
    """Run worker coroutines (each built from a stop event) as tasks; stop them gracefully on exit."""
    stops = [asyncio.Event() for _ in factories]
    tasks: list[asyncio.Task[None]] = []
    for factory, stop in zip(factories, stops, strict=True):
        coro: Coroutine[Any, Any, None] = factory(stop)
        tasks.append(asyncio.create_task(coro))
    try:
        yield Workers(stops, tasks)
    finally:
        for stop in stops:
            stop.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [d for d in done if isinstance(d, BaseException)]
        if errors:
            raise errors[0]


def loads(value: bytes) -> Any:
    return json.loads(value)


SAMPLE = Path(__file__).resolve().parents[2] / "loadgen" / "samples" / "mmlu_pro_200.jsonl"


def sample_requests(n: int = 200) -> list[InputRequest]:
    """The first ``n`` requests of the 200-question MMLU-Pro sample file."""
    requests, bad = read_batch(SAMPLE, 10**9)
    assert bad == []
    return requests[:n]


async def pipeline_topics(s: Settings) -> None:
    """Create the pipeline's topics with ``s.partitions`` (idempotent). Before the workers start: a consumer
    subscribing to a missing topic has the broker auto-create it with its own default (Tansu: 4 partitions)."""
    t = s.topics
    await ensure_topics(kafka_config(s), [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)


async def submit_requests(
    s: Settings, store: Store, requests: list[InputRequest], source: str, job_id: str | None = None
) -> JobMeta:
    """Create the test's topics (idempotent) and submit ``requests`` as one job (``job_id``, else a new id) with
    a short-lived producer."""
    await pipeline_topics(s)
    producer = make_producer(kafka_config(s))
    await producer.start()
    try:
        return await submit(producer, store, s.topics.prompts, requests, source=source, job_id=job_id)
    finally:
        await producer.stop()


async def register(store: Store, meta: JobMeta, request_ids: Sequence[str]) -> bytes:
    """Register a job as submit does (its request ids and a new secret) and start it; returns the secret."""
    secret = new_secret()
    await store.register_job(meta, request_ids, secret)
    assert await store.start_job(meta.job_id) == "running"
    return secret


def signed(msg: RoutedMessage, secret: bytes) -> RoutedMessage:
    """The routed message with its prompt signed by the job's secret."""
    prompt: PromptMessage = sign(msg.prompt, secret)
    return msg.model_copy(update={"prompt": prompt})


async def assert_exact_totals(store: Store, job: str, completed: int, failed: int = 0) -> list[RequestResult]:
    """One record per request, and job counters equal to the sums of the per-request records."""
    totals = await store.totals(job)
    results = [r async for r in store.results(job)]
    assert (totals.completed, totals.failed) == (completed, failed)
    assert len(results) == completed + failed == len({r.request_id for r in results})
    assert await store.redis.scard(done_key(job)) == completed + failed  # type: ignore[misc]
    for route in ("reasoning", "direct"):
        mine = [r for r in results if r.route.route == route]
        rt = totals.routes[route]
        assert (rt.requests, rt.failed) == (len(mine), sum(r.status == "failed" for r in mine))
        assert rt.prompt_tokens == sum(r.usage.prompt_tokens for r in mine)
        assert rt.completion_tokens == sum(r.usage.completion_tokens for r in mine)
        assert rt.reasoning_tokens == sum(r.usage.reasoning_tokens for r in mine)
    return results


async def restart_until_done(
    procs: Procs, crashes: Iterator[str], done: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 300
) -> int:
    """Wait until ``done()``, restarting the ``inference`` worker each time it dies (the next crash points of
    ``crashes``, none once they run out; its exit code recorded in ``procs.exits``); how many restarts."""
    restarts = 0

    async def finished() -> bool:
        nonlocal restarts
        if not procs.procs["inference"].alive():
            restarts += 1
            procs.exits.append(("inference", procs.procs["inference"].proc.returncode))
            procs.start("inference", "inference", THINKROUTE_CRASH_POINTS=next(crashes, ""))
        return await done()

    await wait_until(finished, timeout_s, what)
    return restarts
