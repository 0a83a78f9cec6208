"""``thinkroute worker inference``: open the HTTP, Redis and Kafka clients once, answer until stopped."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from workers.errors import ConfigError
from workers.inference.client import LLMClient, RetryPolicy, make_http_clients
from workers.inference.fallback import make_fallback, public_url
from workers.inference.worker import InferenceWorker
from workers.kafka.clients import kafka_config, make_consumer, make_producer, start_client
from workers.runtime.crashpoints import CrashPoints
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.process import install_stop_signals, serve_metrics
from workers.settings import Settings
from workers.store.jobstore import Store, redis_client

log = logging.getLogger(__name__)


async def serve_inference(s: Settings, stop: asyncio.Event | None = None) -> None:
    """Run an inference worker until SIGTERM/SIGINT, or until ``stop`` is set when the caller passes one."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    reasoning_url, direct_url = s.reasoning_url(), s.direct_url()
    if not reasoning_url or not direct_url:
        raise ConfigError("set THINKROUTE_LLM_BASE_URL (or both THINKROUTE_LLM_REASONING_BASE_URL and _DIRECT_)")
    kc = kafka_config(s)
    t, inf = s.topics, s.inference
    api_key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
    async with AsyncExitStack() as stack:
        http = make_http_clients(inf, api_key)
        fallback, fallback_http = make_fallback(inf)
        for client in [*http, *fallback_http]:
            stack.push_async_callback(client.aclose)
        redis = redis_client(s)
        stack.push_async_callback(redis.aclose)
        await redis.ping()
        producer = make_producer(kc)
        await start_client(producer, kc)
        stack.push_async_callback(producer.stop)
        llm = LLMClient(http, RetryPolicy.from_settings(inf))
        consumer = make_consumer(kc, inf.group, max_poll_records=inf.concurrency)
        metrics = WorkerMetrics("inference", inf.group)
        metrics.watch(consumer)
        await serve_metrics(stack, metrics, s.metrics_host, inf.metrics_port)
        worker = InferenceWorker(
            s,
            consumer,
            producer,
            llm,
            Store(redis, autopipeline=True, settle_s=s.api.settle_s),
            crash=CrashPoints(s.crash_points),
            metrics=metrics,
            fallback=fallback,
        )
        consumer.subscribe(list(t.routed()), listener=worker.rebalance_listener())
        await start_client(consumer, kc)
        stack.push_async_callback(consumer.stop)
        log.info(
            "inference up: %s -> Redis, concurrency %d, reasoning %s, direct %s, fallback %s",
            list(t.routed()),
            inf.concurrency,
            reasoning_url,
            direct_url,
            "none" if fallback is None else f"{public_url(fallback.base_url)} (breaker at {inf.breaker_failures})",
        )
        await worker.run(stop)
    log.info("inference stopped: %s", worker.stats)
