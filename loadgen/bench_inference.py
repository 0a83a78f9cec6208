"""``python -m loadgen.bench_inference``: the bench's "inference + Redis alone" phase on its own, repeated, with
the CPU each process spent per result (from /proc), for side-by-side comparisons of the inference path.

``--make-routed FILE --prompts N`` routes N bench prompts once with the real classifier and policy and saves
the RoutedMessage lines; ``--routed FILE`` then measures: it starts Tansu, Valkey and the replay server (time
scale 0) and one inference worker process, and per round produces ``--count`` routed messages while the
worker is SIGSTOPped and lets it go; the rate is count / (last ``finished_at`` - that moment), as in
`loadgen.bench_pipeline.inference_alone`. ``--env K=V`` passes settings to the worker (A/B of a setting).
``--variant LABEL:K=V,K=V`` (repeated) interleaves variants on the same services: each round runs every variant
in turn (a b c a b c ...), each on a fresh worker process (started, warmed up, measured, stopped), and one
summary line per variant gives the median and range of each process's CPU per result.
Run it with ``PYTHONPATH`` at another checkout to measure that checkout's worker and replay server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from loadgen.bench_common import MODEL, cpu_seconds, load_bodies, paused, prompt
from loadgen.bench_pipeline import WARMUP, PipelineRig, finished, publish_routed, wait_results
from loadgen.procs import Procs, settings_env
from schemas.messages import RoutedMessage
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.local.services import Service, start_broker, start_redis, start_replay
from workers.settings import InferenceSettings, Settings, Topics


def make_routed(n: int, out: Path) -> None:
    from workers.classifier.cache import ensure_artifact
    from workers.classifier.model import Classifier
    from workers.router.policy import load_policy
    from workers.router.text import prompt_text

    clf = Classifier.load(ensure_artifact(Settings().cache_dir, progress=False))
    policy = load_policy(None, clf.labels)
    bodies = load_bodies(n)
    lines = []
    with clf:
        for i in range(0, n, 64):
            chunk = bodies[i : i + 64]
            for j, (body, c) in enumerate(zip(chunk, clf.classify([prompt_text(b) for b in chunk]), strict=True)):
                decision = policy.decide(c, body.model, MODEL, clf.version)
                msg = RoutedMessage(prompt=prompt("route", i + j, body), route=decision, routed_at=time.time())
                lines.append(msg.model_dump_json())
    out.write_text("\n".join(lines) + "\n")


Variant = tuple[str, dict[str, str]]  # label, worker environment


async def measure(
    routed: list[RoutedMessage], count: int, rounds: int, variants: list[Variant]
) -> list[dict[str, Any]]:
    """Each round runs every variant in turn on the same broker, Valkey and replay server; with more than
    one variant each gets a fresh worker process per round, so only one worker is ever running."""
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    svcs: dict[str, Service] = {
        "broker": start_broker(work / "broker"),
        "redis": start_redis(work / "redis"),
        "replay": start_replay(work / "replay", time_scale=0.0),
    }
    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=svcs["broker"].address,
        redis_url=SecretStr(f"redis://{svcs['redis'].address}/0"),
        llm_base_url=f"http://{svcs['replay'].address}/v1",
        topics=Topics(prompts=f"p-{tag}", reasoning=f"r-{tag}", direct=f"d-{tag}", dead=f"x-{tag}"),
        partitions=4,
        inference=InferenceSettings(group=f"inf-{tag}"),
        session_timeout_ms=20_000,
    )
    kc = kafka_config(s)
    t = s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], 4)
    procs = Procs(work / "workers", settings_env(s))
    producer = make_producer(kc)
    await producer.start()
    redis = Redis.from_url(s.redis_url.get_secret_value())  # type: ignore[union-attr]
    rows: list[dict[str, Any]] = []
    rig: PipelineRig | None = None
    try:
        for _ in range(rounds):
            for label, env in variants:
                if rig is None or len(variants) > 1:
                    inf = procs.start("inference", "inference", **env)
                    rig = PipelineRig(producer, redis, inf, t.reasoning, t.direct, 300.0)
                    warm = f"w-{uuid.uuid4().hex[:8]}"
                    await publish_routed(rig, warm, routed[:WARMUP])
                    await wait_results(rig, warm, WARMUP, inf)
                pids = {name: svc.proc.pid for name, svc in svcs.items()} | {"inference": rig.inference.proc.pid}
                pids["bench"] = os.getpid()
                row = {"label": label} | await one_round(rig, routed, count, pids)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
                if len(variants) > 1:
                    rig.inference.terminate()
                    rig.inference.stop(timeout=20)
    finally:
        await producer.stop()
        await redis.aclose()
        procs.stop_all()
        for svc in reversed(list(svcs.values())):
            svc.stop()
    return rows


async def one_round(rig: PipelineRig, routed: list[RoutedMessage], count: int, pids: dict[str, int]) -> dict[str, Any]:
    job = f"inf-{uuid.uuid4().hex[:8]}"
    with paused(rig.inference):
        await publish_routed(rig, job, [routed[i % len(routed)] for i in range(count)])
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    start = time.time()
    await wait_results(rig, job, count, rig.inference)
    after = {k: cpu_seconds(p) for k, p in pids.items()}
    span = max(f for _, f in await finished(rig, job)) - start
    cpu = {k: round((after[k] - before[k]) * 1000 / count, 3) for k in pids}
    return {"per_s": round(count / span, 1), "span_s": round(span, 3), "cpu_ms_per_result": cpu}


def summary(rows: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Median and range per process, and of the rate, over one variant's rounds."""
    mine = [r for r in rows if r["label"] == label]

    def med_range(values: list[float]) -> list[float]:
        return [round(statistics.median(values), 3), min(values), max(values)]

    cpu = {k: med_range([r["cpu_ms_per_result"][k] for r in mine]) for k in mine[0]["cpu_ms_per_result"]}
    rates = sorted(r["per_s"] for r in mine)
    return {
        "label": label,
        "rounds": len(mine),
        "median_per_s": round(statistics.median(rates), 1),
        "rates": rates,
        "cpu_ms": {k: v[0] for k, v in cpu.items()},
        "cpu_ms_median_min_max": cpu,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadgen.bench_inference", description=__doc__.split("\n")[0])
    p.add_argument("--make-routed", type=Path, default=None, help="route --prompts prompts into this file and exit")
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--routed", type=Path, default=None, help="RoutedMessage lines made by --make-routed")
    p.add_argument("--count", type=int, default=3000, help="messages per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--env", action="append", default=[], help="K=V for the worker's environment")
    p.add_argument("--label", default="")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="LABEL:K=V[,K=V...] (repeat): run the variants interleaved, each round a fresh worker per variant",
    )
    args = p.parse_args(argv)
    if args.make_routed:
        make_routed(args.prompts, args.make_routed)
        return
    if not args.routed:
        p.error("--routed FILE (or --make-routed FILE first)")
    routed = [RoutedMessage.model_validate_json(line) for line in args.routed.read_text().splitlines() if line]
    env = dict(e.split("=", 1) for e in args.env)
    variants: list[Variant] = [(args.label, env)]
    if args.variant:
        variants = []
        for v in args.variant:
            label, _, kvs = v.partition(":")
            variants.append((label, env | dict(kv.split("=", 1) for kv in kvs.split(",") if kv)))
    rows = asyncio.run(measure(routed, args.count, args.rounds, variants))
    for label, _ in variants:
        print(json.dumps(summary(rows, label)))


if __name__ == "__main__":
    main()
