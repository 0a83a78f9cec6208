"""``thinkroute worker router``: open the classifier, the policy and the Kafka clients once, route until stopped."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path

from workers.classifier.model import Classifier
from workers.kafka.clients import kafka_config, make_consumer, make_producer, start_client
from workers.router.loading import default_artifact, loader, open_pair
from workers.router.policy import load_policy
from workers.router.reload import PolicyWatcher
from workers.router.worker import RouterWorker
from workers.runtime.crashpoints import CrashPoints
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.process import install_stop_signals, serve_metrics
from workers.settings import Settings

log = logging.getLogger(__name__)


def load_classifier(s: Settings) -> Classifier:
    """The router's configured classifier, its sentence embedding exposed: a policy with an ``embedding-v1`` gain
    head (one `thinkroute fit` writes, and a running router may swap to) needs it; it costs about 5% of classify
    time (400 prompts, int8 CPU: 2.53 s vs 2.40 s, medians of 5 alternating runs). A policy file's own
    ``classifier`` comes first: see `workers.router.loading.load_routing`."""
    return loader(s, embeddings=True)(default_artifact(s))


async def serve_router(s: Settings, stop: asyncio.Event | None = None, artifact: Path | None = None) -> None:
    """Run a router until SIGTERM/SIGINT, or until ``stop`` is set when the caller passes one."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    default = (lambda: artifact) if artifact else (lambda: default_artifact(s))  # for a policy naming none
    metrics = WorkerMetrics("router", s.router.group)
    path = s.router.policy_path  # a file is watched for new versions; the shipped table has none
    load = loader(s, embeddings=True)  # a policy swapped in later may read embeddings
    if path is None:
        policy = load_policy(None)
        classifier = await asyncio.to_thread(open_pair, policy, default, load)
        watcher = None
        metrics.policy_in_use(policy.version, classifier.version)
    else:
        watcher, classifier = await asyncio.to_thread(
            PolicyWatcher.open, path, default, load, metrics, s.router.policy_poll_s
        )
        policy = watcher.policy
    kc = kafka_config(s)
    t = s.topics
    producer = make_producer(kc)
    consumer = make_consumer(
        kc, s.router.group, max_poll_records=s.router.max_poll_records, fetch_max_wait_ms=s.router.fetch_max_wait_ms
    )
    metrics.watch(consumer)
    worker = RouterWorker(
        s, consumer, producer, classifier, policy, crash=CrashPoints(s.crash_points), metrics=metrics, watcher=watcher
    )
    consumer.subscribe([t.prompts], listener=worker.rebalance_listener())
    async with AsyncExitStack() as stack:
        stack.callback(lambda: worker.classifier.close())  # the one in use then (a swap closes the one before)
        await start_client(producer, kc)
        stack.push_async_callback(producer.stop)
        await serve_metrics(stack, metrics, s.metrics_host, s.router.metrics_port)
        await start_client(consumer, kc)
        stack.push_async_callback(consumer.stop)
        log.info(
            "router up: %s -> %s | %s, batch %d / %d ms, policy %s, classifier %s on %s",
            t.prompts,
            t.reasoning,
            t.direct,
            s.router.batch_max,
            s.router.batch_wait_ms,
            policy.version,
            classifier.version,
            classifier.providers[0],
        )
        await worker.run(stop)
    log.info(
        "router stopped: %d batches, routed %s, dead %d", worker.stats.batches, worker.stats.routed, worker.stats.dead
    )
