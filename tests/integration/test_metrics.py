"""Scrape the workers' /metrics during a real job and check the values against the job's known counts;
/ready against real consumers joining a group (one owning the partition, one idle)."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.helpers import ROOT, wait_until
from tests.integration.helpers import committed, produce, running
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config, make_consumer, make_producer
from workers.local.services import free_port
from workers.router.serve import serve_router
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.process import serve_metrics
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.batchfile import read_batch
from workers.submit.jobs import submit, wait_for_job

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "loadgen" / "samples" / "mmlu_pro_200.jsonl"
N = 48
BAD = [(b"bad-1", b"{not json"), (b"bad-2", b"")]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as client:
        resp = await client.get(url, timeout=5)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_metrics_match_the_job(settings: Settings, artifact: Path, redis: Redis) -> None:
    rport, iport = free_port(), free_port()
    s = settings.model_copy(
        update={
            "metrics_host": "127.0.0.1",
            "router": settings.router.model_copy(update={"metrics_port": rport}),
            "inference": settings.inference.model_copy(update={"metrics_port": iport}),
        }
    )
    router_url, inference_url = f"http://127.0.0.1:{rport}/metrics", f"http://127.0.0.1:{iport}/metrics"
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    requests, _ = read_batch(SAMPLE, s.max_prompt_chars)
    requests = requests[:N]
    store = Store(redis)
    producer = make_producer(kc)
    await producer.start()
    try:
        async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:

            async def both_assigned() -> bool:
                w.check()
                try:
                    r, i = await scrape(router_url), await scrape(inference_url)
                except httpx.TransportError:
                    return False
                owned = total(r, "thinkroute_assigned_partitions", topic=t.prompts)
                return owned == s.partitions and total(i, "thinkroute_assigned_partitions") == 2 * s.partitions

            await wait_until(both_assigned, 60, "both workers to own their partitions")
            for url in (router_url, inference_url):  # consuming: ready
                async with httpx.AsyncClient() as client:
                    assert (await client.get(url.replace("/metrics", "/ready"))).status_code == 200
            await produce(kc.bootstrap, t.prompts, BAD)
            meta = await submit(producer, store, t.prompts, requests, source=SAMPLE.name)
            totals = await wait_for_job(store, meta, check=w.check, timeout_s=120)
            assert (totals.completed, totals.failed) == (N, 0)
            results = [r async for r in store.results(meta.job_id)]

            async def drained() -> bool:  # commits trail the results by one loop turn at most
                r, i = await scrape(router_url), await scrape(inference_url)
                return (
                    total(r, "thinkroute_committed_offset", topic=t.prompts) == N + len(BAD)
                    and total(i, "thinkroute_committed_offset") == N
                )

            await wait_until(drained, 30, "the workers to commit everything")
            async with httpx.AsyncClient() as client:
                assert (await client.get(router_url.replace("/metrics", "/nope"))).status_code == 404
            r, i = await scrape(router_url), await scrape(inference_url)

            # router: in, out per route and dead letters, decisions, batches, classifier latency
            assert total(r, "thinkroute_messages_in_total", stage="router", topic=t.prompts) == N + len(BAD)
            for route, topic in (("reasoning", t.reasoning), ("direct", t.direct)):
                assert total(r, "thinkroute_messages_out_total", topic=topic) == totals.routes[route].requests
                assert total(r, "thinkroute_reasoning_decisions_total", route=route) == totals.routes[route].requests
            assert total(r, "thinkroute_messages_out_total", topic=t.dead) == len(BAD)
            assert total(r, "thinkroute_dead_letters_total", stage="router") == len(BAD)
            categories = Counter(x.route.category for x in results)
            for category, n in categories.items():
                assert total(r, "thinkroute_reasoning_decisions_total", category=category) == n
            reasoned = total(r, "thinkroute_reasoning_decisions_total", enabled="true")
            assert reasoned == totals.routes["reasoning"].requests
            assert total(r, "thinkroute_batch_size_records_sum", stage="router") == N + len(BAD)
            batches = total(r, "thinkroute_batch_size_records_count", stage="router")
            classified = total(r, "thinkroute_classifier_latency_seconds_count", classifier="category")
            assert 1 <= classified <= batches <= N + len(BAD)
            assert total(r, "thinkroute_classifier_latency_seconds_sum") > 0

            # inference: requests, tokens by route and kind, latency, messages in
            assert total(i, "thinkroute_messages_in_total", stage="inference") == N
            assert total(i, "thinkroute_batch_size_records_sum", stage="inference") == N
            for route in ("reasoning", "direct"):
                rt = totals.routes[route]
                assert total(i, "thinkroute_requests_total", route=route, status="completed") == rt.requests
                assert total(i, "thinkroute_tokens_total", route=route, kind="prompt") == rt.prompt_tokens
                assert total(i, "thinkroute_tokens_total", route=route, kind="completion") == rt.completion_tokens
                assert total(i, "thinkroute_tokens_total", route=route, kind="reasoning") == rt.reasoning_tokens
                assert total(i, "thinkroute_request_latency_seconds_count", route=route) == rt.requests
            assert total(i, "thinkroute_tokens_total", kind="reasoning") > 0
            assert total(i, "thinkroute_requests_total", status="duplicate") == 0
            assert total(i, "thinkroute_llm_retries_total") == 0
            assert total(i, "thinkroute_dead_letters_total") == 0

            # lag, kafka_exporter names: per partition, equal to the group's committed offsets in the broker
            n = s.partitions
            for metrics, group, topics in (
                (r, s.router.group, [t.prompts]),
                (i, s.inference.group, [t.reasoning, t.direct]),
            ):
                in_broker = await committed(kc.bootstrap, group, topics, n)
                for (topic, p), offset in in_broker.items():
                    labels = {"consumergroup": group, "topic": topic, "partition": str(p)}
                    if offset < 0:  # nothing ever reached this partition
                        continue
                    assert total(metrics, "thinkroute_committed_offset", **labels) == offset
                    end = total(metrics, "thinkroute_partition_high_watermark", topic=topic, partition=str(p))
                    assert end == offset
                    assert total(metrics, "thinkroute_consumer_lag_records", **labels) == 0
                assert total(metrics, "thinkroute_consumer_lag_sum_records", consumergroup=group) == 0
    finally:
        await producer.stop()

    with pytest.raises(httpx.TransportError):  # the endpoint closes with its worker
        await scrape(router_url)


async def status(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url, timeout=5)).status_code


async def test_ready_once_the_consumer_joins_its_group_even_with_nothing_assigned(settings: Settings) -> None:
    kc, topic, group = kafka_config(settings), settings.topics.prompts, settings.router.group
    await ensure_topics(kc, [topic], 1)  # one partition, two members: one of them is idle
    consumers: list[AIOKafkaConsumer] = []
    urls: list[str] = []
    async with AsyncExitStack() as stack:
        for _ in range(2):
            consumer = make_consumer(kc, group)
            consumer.subscribe([topic])
            metrics = WorkerMetrics("router", group)
            metrics.watch(consumer)
            port = free_port()
            await serve_metrics(stack, metrics, "127.0.0.1", port)
            consumers.append(consumer)
            urls.append(f"http://127.0.0.1:{port}/ready")
        assert [await status(u) for u in urls] == [503, 503]  # subscribed, not started: not a member

        await consumers[0].start()
        stack.push_async_callback(consumers[0].stop)

        async def first_ready() -> bool:
            return await status(urls[0]) == 200

        await wait_until(first_ready, 30, "the first member to join")
        assert consumers[0].assignment() and await status(urls[1]) == 503

        await consumers[1].start()
        stack.push_async_callback(consumers[1].stop)

        async def both_ready_one_idle() -> bool:
            owners = [len(c.assignment()) for c in consumers]
            return sorted(owners) == [0, 1] and [await status(u) for u in urls] == [200, 200]

        await wait_until(both_ready_one_idle, 60, "both members to join, one of them with no partition")

        idle = next(i for i, c in enumerate(consumers) if not c.assignment())
        await consumers[idle].stop()  # left the group: not ready any more; the owner stays ready
        assert await status(urls[idle]) == 503 and await status(urls[1 - idle]) == 200
