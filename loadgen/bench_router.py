"""Bench phases 1 and 2: the classifier alone (the ceiling), and the router worker through the broker
(maximum throughput from a backlog, then latency, consumer lag and RSS at fixed offered rates)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from loadgen.bench_common import (
    Committed,
    CpuMeter,
    log,
    paused,
    percentiles,
    read_back,
    rss_mb,
    send_at_rate,
    send_prompts,
)
from schemas.batch import ChatBody
from schemas.messages import RoutedMessage
from workers.classifier.model import Classifier
from workers.kafka.lag import measure
from workers.local.services import Service
from workers.router.text import prompt_text
from workers.settings import KafkaSettings

WARMUP = 48
SAMPLE_S = 1.0


def _batches(clf: Classifier, texts: Sequence[str], size: int, depth: int) -> tuple[float, list[float]]:
    """Classify ``texts`` in batches of ``size``, ``depth`` batches at a time (as the router keeps them, so the
    classifier's threads never wait for the last prompt of a batch): (seconds, milliseconds per batch)."""

    def one(chunk: Sequence[str]) -> float:
        t = time.perf_counter()
        clf.classify(chunk, False)
        return (time.perf_counter() - t) * 1000

    start = time.perf_counter()
    with ThreadPoolExecutor(depth) as pool:
        times = list(pool.map(one, [texts[i : i + size] for i in range(0, len(texts), size)]))
    return time.perf_counter() - start, times


def classifier_ceiling(
    artifact: Path,
    bodies: Sequence[ChatBody],
    sizes: Sequence[int],
    sweep_n: int,
    depth: int = 2,
    first_tier: bool = True,
) -> dict[str, Any]:
    """Tokeniser + onnxruntime in this process: the sweep picks the batch size, the full run at it is reported.
    ``first_tier``: as the router runs it (the lexical tier first), or the encoder for every prompt."""
    clf = Classifier.load(artifact, first_tier=first_tier)
    texts = [prompt_text(b) for b in bodies]
    clf.classify(texts[: max(sizes)])  # warm-up: first runs allocate
    sweep: dict[int, float] = {}
    for size in sizes:
        chunk = texts[:sweep_n]
        sweep[size] = len(chunk) / _batches(clf, chunk, size, depth)[0]
        log(f"classifier batch {size}: {sweep[size]:.0f} prompts/s")
    best = max(sweep, key=lambda k: sweep[k])
    seconds, times = _batches(clf, texts, best, depth)
    per_s = len(texts) / seconds
    log(f"classifier alone: {per_s:.0f} prompts/s at batch {best} ({depth} at a time) over {len(texts)} prompts")
    out = {
        "per_s": per_s,
        "batch": best,
        "p99_batch_ms": percentiles(times)["p99"],
        "sweep": {str(k): round(v, 1) for k, v in sweep.items()},
        "providers": list(clf.providers),
        "version": clf.version,
        "first_tier": clf.tier is not None,
        "tier_share": tier_share(clf, texts),
        "tier_alone_per_s": tier_alone_per_s(clf, texts, best),
    }
    clf.close()
    del clf
    gc.collect()
    return out


def tier_share(clf: Classifier, texts: Sequence[str]) -> float:
    """The share of ``texts`` the first tier decides (0 without one)."""
    if clf.tier is None or not texts:
        return 0.0
    return sum(c.tier == "lexical" for c in clf.classify(texts, False)) / len(texts)


def tier_alone_per_s(clf: Classifier, texts: Sequence[str], batch: int) -> float | None:
    """The first tier's own throughput: ``Classifier.tier_pass`` for every prompt, no encoder (None
    without a tier). What bounds the cascade: 1 / (share / this + (1 - share) / the encoder's)."""
    if clf.tier is None or not texts:
        return None
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        clf.tier_pass(texts[i : i + batch], clf.tier)
    return len(texts) / (time.perf_counter() - start)


@dataclass
class RouterRig:
    """A running router process and what the bench needs to drive it."""

    kc: KafkaSettings
    producer: AIOKafkaProducer
    proc: Service
    group: str
    prompts_topic: str
    routed_topics: tuple[str, str]
    partitions: int
    timeout_s: float
    watch: dict[str, int]  # processes whose CPU use is reported per phase (name -> pid)


async def run_routed(
    rig: RouterRig, job: str, bodies: Sequence[ChatBody], backlog: bool
) -> tuple[float, list[RoutedMessage]]:
    """Publish the prompts (with the router stopped while they are produced when ``backlog``), wait until the
    router committed them all, read the routed messages back. Returns (unix time it was let go, messages)."""
    async with Committed(rig.kc, rig.group, rig.prompts_topic, rig.partitions) as c:
        base = await c.total()
        if backlog:
            with paused(rig.proc):
                await send_prompts(rig.producer, rig.prompts_topic, job, bodies)
        else:
            await send_prompts(rig.producer, rig.prompts_topic, job, bodies)
        start = time.time()
        await c.wait_for(base + len(bodies), rig.timeout_s, rig.proc)
    values = await read_back(rig.kc, rig.routed_topics, len(bodies), job, rig.timeout_s)
    return start, [RoutedMessage.model_validate_json(v) for v in values]


async def warm_up(rig: RouterRig, bodies: Sequence[ChatBody]) -> None:
    await run_routed(rig, f"warm-{uuid.uuid4().hex[:8]}", bodies[:WARMUP], backlog=False)


async def max_throughput(rig: RouterRig, bodies: Sequence[ChatBody]) -> tuple[dict[str, Any], list[RoutedMessage]]:
    log(f"router: {len(bodies)} prompts as a backlog ...")
    start, routed = await run_routed(rig, f"max-{uuid.uuid4().hex[:8]}", bodies, backlog=True)
    span = max(m.routed_at for m in routed) - start
    per_s = len(routed) / span
    log(f"router: {per_s:.0f} prompts/s ({len(routed)} in {span:.1f}s)")
    return {"per_s": per_s, "span_s": span, "routed": len(routed)}, routed


async def at_rate(
    rig: RouterRig, bodies: Sequence[ChatBody], rate: float, seconds: float, share: float
) -> dict[str, Any]:
    """Offer ``rate`` prompts/s for ``seconds``; latency from the messages, lag and RSS sampled every second.

    The sampler stops on an event and is awaited, not only cancelled: a cancel that lands inside a lag
    measurement can be swallowed there (the sampler tolerates a failed measurement), and a sampler that lived
    on kept appending to this phase's series after the router had exited (RSS 0; once in CI, once in six
    runs on a loaded machine)."""
    job = f"load{round(share * 100)}-{uuid.uuid4().hex[:8]}"
    series: list[dict[str, Any]] = []
    t0 = time.time()
    done = asyncio.Event()

    async def sample() -> None:
        since = CpuMeter(rig.watch)  # cores used by each process since the previous sample
        while not done.is_set():
            try:
                lag = (await measure(rig.kc, {rig.group: [rig.prompts_topic]}, timeout_s=5))[0].total
            except Exception:  # a missed sample is not worth failing the run for
                lag = -1
            rss = round(rss_mb(rig.proc.proc.pid), 1)
            if not done.is_set():
                series.append({"t_s": round(time.time() - t0, 1), "lag": lag, "rss_mb": rss, "cores": since.shares()})
            since = CpuMeter(rig.watch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), SAMPLE_S)

    log(f"router at {share:.0%} load: {rate:.0f} prompts/s for {seconds:.0f}s ...")
    cpu = CpuMeter(rig.watch)
    sampler = asyncio.create_task(sample())
    try:
        async with Committed(rig.kc, rig.group, rig.prompts_topic, rig.partitions) as c:
            base = await c.total()
            sent = await send_at_rate(rig.producer, rig.prompts_topic, job, bodies, rate, seconds)
            await c.wait_for(base + sent, rig.timeout_s, rig.proc)
        cores = cpu.shares()
    finally:
        done.set()
        await sampler  # at most one lag measurement (5 s) away
    values = await read_back(rig.kc, rig.routed_topics, sent, job, rig.timeout_s)
    routed = [RoutedMessage.model_validate_json(v) for v in values]
    lat = percentiles([(m.routed_at - m.prompt.submitted_at) * 1000 for m in routed])
    done_s = max(m.routed_at for m in routed) - t0
    log(f"router at {share:.0%} load: latency p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms; cores used {cores}")
    rss = [s["rss_mb"] for s in series]
    return {
        "share": share,
        "offered_per_s": round(rate, 1),
        "seconds": seconds,
        "prompts": sent,
        "achieved_per_s": round(sent / done_s, 1),
        "added_latency_ms": {k: round(v, 1) for k, v in lat.items()},
        "lag_max": max((s["lag"] for s in series), default=0),
        "cores": cores,
        "series": series,
        "rss_mb": {"start": rss[0] if rss else 0.0, "max": max(rss, default=0.0), "end": rss[-1] if rss else 0.0},
    }
