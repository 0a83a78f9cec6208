"""``python -m loadgen.bench_inference``: the bench's "inference + Redis alone" phase on its own, repeated, with
the CPU each process spent per result (from /proc), for side-by-side comparisons of the inference path.

``--make-routed FILE --prompts N`` routes N bench prompts once with the real classifier and policy and saves
the RoutedMessage lines; ``--routed FILE`` then measures: it starts Tansu, Valkey and the replay server (time
scale 0) and one inference worker process, and per round produces ``--count`` routed messages while the
worker is SIGSTOPped and lets it go; the rate is count / (last ``finished_at`` - that moment), as in
`loadgen.bench_pipeline.inference_alone`. ``--env K=V`` passes settings to the worker (A/B of a setting).
Run it with ``PYTHONPATH`` at another checkout to measure that checkout's worker and replay server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


async def measure(routed: list[RoutedMessage], count: int, rounds: int, env: dict[str, str]) -> list[dict[str, Any]]:
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
    procs = Procs(work / "workers", settings_env(s, **env))
    producer = make_producer(kc)
    await producer.start()
    redis = Redis.from_url(s.redis_url.get_secret_value())  # type: ignore[union-attr]
    rows: list[dict[str, Any]] = []
    try:
        inf = procs.start("inference", "inference")
        rig = PipelineRig(producer, redis, inf, t.reasoning, t.direct, 300.0)
        pids = {name: svc.proc.pid for name, svc in svcs.items()} | {"inference": inf.proc.pid, "bench": os.getpid()}
        warm = f"w-{tag}"
        await publish_routed(rig, warm, routed[:WARMUP])
        await wait_results(rig, warm, WARMUP, inf)
        for _ in range(rounds):
            job = f"inf-{uuid.uuid4().hex[:8]}"
            with paused(inf):
                await publish_routed(rig, job, [routed[i % len(routed)] for i in range(count)])
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            start = time.time()
            await wait_results(rig, job, count, inf)
            after = {k: cpu_seconds(p) for k, p in pids.items()}
            span = max(f for _, f in await finished(rig, job)) - start
            cpu = {k: round((after[k] - before[k]) * 1000 / count, 3) for k in pids}
            row = {"per_s": round(count / span, 1), "span_s": round(span, 3), "cpu_ms_per_result": cpu}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    finally:
        await producer.stop()
        await redis.aclose()
        procs.stop_all()
        for svc in reversed(list(svcs.values())):
            svc.stop()
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadgen.bench_inference", description=__doc__.split("\n")[0])
    p.add_argument("--make-routed", type=Path, default=None, help="route --prompts prompts into this file and exit")
    p.add_argument("--prompts", type=int, default=2000)
    p.add_argument("--routed", type=Path, default=None, help="RoutedMessage lines made by --make-routed")
    p.add_argument("--count", type=int, default=3000, help="messages per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--env", action="append", default=[], help="K=V for the worker's environment")
    p.add_argument("--label", default="")
    args = p.parse_args(argv)
    if args.make_routed:
        make_routed(args.prompts, args.make_routed)
        return
    if not args.routed:
        p.error("--routed FILE (or --make-routed FILE first)")
    routed = [RoutedMessage.model_validate_json(line) for line in args.routed.read_text().splitlines() if line]
    env = dict(e.split("=", 1) for e in args.env)
    rows = asyncio.run(measure(routed, args.count, args.rounds, env))
    rates = sorted(r["per_s"] for r in rows)
    cpu = {k: sorted(r["cpu_ms_per_result"][k] for r in rows)[len(rows) // 2] for k in rows[0]["cpu_ms_per_result"]}
    print(json.dumps({"label": args.label, "median_per_s": rates[len(rates) // 2], "rates": rates, "cpu_ms": cpu}))


if __name__ == "__main__":
    main()
