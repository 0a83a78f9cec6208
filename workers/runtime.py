"""Worker processes: open each client once, run the loop, stop gracefully on SIGTERM/SIGINT.

SIGTERM: stop fetching, finish (drain) what was fetched, commit, close. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import AsyncExitStack
from pathlib import Path

from redis.asyncio import Redis

from workers.artifacts import ensure_artifact
from workers.bus import KafkaConfig, make_consumer, make_producer
from workers.crashpoints import CrashPoints
from workers.errors import ConfigError
from workers.inference.client import LLMClient, RetryPolicy, make_http_clients
from workers.inference.worker import InferenceConfig, InferenceWorker
from workers.metrics import WorkerMetrics, start_metrics_server
from workers.router.classifier import Classifier
from workers.router.policy import load_policy
from workers.router.worker import RouterConfig, RouterWorker
from workers.settings import Settings
from workers.store import Store

log = logging.getLogger(__name__)


def kafka_config(s: Settings) -> KafkaConfig:
    if not s.kafka_bootstrap:
        raise ConfigError("THINKROUTE_KAFKA_BOOTSTRAP is not set")
    k = s.kafka
    return KafkaConfig(
        bootstrap=s.kafka_bootstrap,
        security_protocol=k.security_protocol,
        sasl_mechanism=k.sasl_mechanism,
        sasl_username=k.sasl_username,
        sasl_password=k.sasl_password.get_secret_value() if k.sasl_password else None,
        ssl_cafile=k.ssl_cafile,
        ssl_certfile=k.ssl_certfile,
        ssl_keyfile=k.ssl_keyfile,
        session_timeout_ms=s.session_timeout_ms,
    )


def redis_client(s: Settings) -> Redis:
    if s.redis_url is None:
        raise ConfigError("THINKROUTE_REDIS_URL is not set")
    return Redis.from_url(
        s.redis_url.get_secret_value(), socket_timeout=10, socket_connect_timeout=5, health_check_interval=15
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def _on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without draining", signame)
            logging.shutdown()
            os._exit(130)
        log.info("%s received: stop fetching, drain, commit, close", signame)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig.name)


def load_classifier(s: Settings) -> Classifier:
    artifact = s.router.artifact_dir or ensure_artifact(s.cache_dir, progress=False)
    return Classifier.load(artifact, providers=s.router.providers, intra_op_threads=s.router.intra_op_threads)


async def serve_metrics(stack: AsyncExitStack, metrics: WorkerMetrics, host: str, port: int) -> None:
    """Serve the worker's /metrics for as long as ``stack`` is open (port 0: not at all)."""
    server = await start_metrics_server(metrics, host, port)
    if server is not None:

        async def close() -> None:
            server.close()
            await server.wait_closed()

        stack.push_async_callback(close)


async def serve_router(s: Settings, stop: asyncio.Event | None = None, artifact: Path | None = None) -> None:
    """Run a router until SIGTERM/SIGINT, or until ``stop`` is set when the caller passes one."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    classifier = (
        Classifier.load(artifact, providers=s.router.providers, intra_op_threads=s.router.intra_op_threads)
        if artifact
        else await asyncio.to_thread(load_classifier, s)
    )
    policy = load_policy(s.router.policy_path, classifier.labels)
    kc = kafka_config(s)
    t = s.topics
    cfg = RouterConfig(
        prompts_topic=t.prompts,
        reasoning_topic=t.reasoning,
        direct_topic=t.direct,
        dead_topic=t.dead,
        batch_max=s.router.batch_max,
        batch_wait_s=s.router.batch_wait_ms / 1000,
        depth=s.router.depth,
        max_pending=s.router.max_pending,
        default_model=s.default_model,
        max_prompt_chars=s.max_prompt_chars,
        max_tokens=s.max_tokens,
    )
    producer = make_producer(kc)
    consumer = make_consumer(
        kc, s.router.group, max_poll_records=max(s.router.batch_max, 500), fetch_max_wait_ms=s.router.fetch_max_wait_ms
    )
    metrics = WorkerMetrics("router", s.router.group)
    metrics.watch(consumer)
    worker = RouterWorker(
        cfg, consumer, producer, classifier, policy, crash=CrashPoints(s.crash_points), metrics=metrics
    )
    consumer.subscribe([t.prompts], listener=worker.rebalance_listener())
    async with AsyncExitStack() as stack:
        stack.callback(classifier.close)
        await producer.start()
        stack.push_async_callback(producer.stop)
        await serve_metrics(stack, metrics, s.metrics_host, s.router.metrics_port)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        log.info(
            "router up: %s -> %s | %s, batch %d / %d ms, policy %s, classifier %s on %s",
            t.prompts,
            t.reasoning,
            t.direct,
            cfg.batch_max,
            s.router.batch_wait_ms,
            policy.version,
            classifier.version,
            classifier.providers[0],
        )
        await worker.run(stop)
    log.info(
        "router stopped: %d batches, routed %s, dead %d", worker.stats.batches, worker.stats.routed, worker.stats.dead
    )


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
    cfg = InferenceConfig(
        topics=(t.reasoning, t.direct),
        dead_topic=t.dead,
        base_urls={"reasoning": reasoning_url, "direct": direct_url},
        model_urls=s.llm_model_urls,
        concurrency=inf.concurrency,
        families=inf.families,
        default_family=inf.default_family,
        escalate_below=inf.escalate_below,
        escalate_topic=inf.escalate_topic or t.reasoning,
        escalate_model=inf.escalate_model,
        commit_interval_s=inf.commit_interval_ms / 1000,
    )
    api_key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
    async with AsyncExitStack() as stack:
        http = make_http_clients(
            inf.connect_timeout_s, inf.read_timeout_s, inf.concurrency, api_key, inf.http_transport
        )
        for client in http:
            stack.push_async_callback(client.aclose)
        redis = redis_client(s)
        stack.push_async_callback(redis.aclose)
        await redis.ping()
        producer = make_producer(kc)
        await producer.start()
        stack.push_async_callback(producer.stop)
        llm = LLMClient(http, RetryPolicy(inf.max_attempts, inf.backoff_base_s, inf.backoff_max_s))
        consumer = make_consumer(kc, inf.group, max_poll_records=inf.concurrency)
        metrics = WorkerMetrics("inference", inf.group)
        metrics.watch(consumer)
        await serve_metrics(stack, metrics, s.metrics_host, inf.metrics_port)
        worker = InferenceWorker(
            cfg,
            consumer,
            producer,
            llm,
            Store(redis, autopipeline=True),
            crash=CrashPoints(s.crash_points),
            metrics=metrics,
        )
        consumer.subscribe(list(cfg.topics), listener=worker.rebalance_listener())
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        log.info(
            "inference up: %s -> Redis, concurrency %d, reasoning %s, direct %s",
            list(cfg.topics),
            cfg.concurrency,
            reasoning_url,
            direct_url,
        )
        await worker.run(stop)
    log.info("inference stopped: %s", worker.stats)
