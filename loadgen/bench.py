"""``python -m loadgen bench [--json]``: how close the router and the pipeline get to the classifier alone.

On the same prompts (``--prompts`` MMLU-Pro questions from the classifier's held-out split, never trained on,
formatted as the samples), in one process tree:

0. the encoder for every prompt against the classifier as the router runs it (the lexical first tier, then the
   encoder for the prompts it is not sure of), alternating encoder, tier, encoder, tier: their ratio, the tier's
   share of the prompts and its own throughput alone;
1. the classifier alone (tokeniser + onnxruntime, in this process) at the best of ``--batch-sizes``, two batches
   at a time as the router runs them (its threads never wait for a batch's last prompt): the ceiling;
2. the router worker as its own process (``python -m workers worker router``, micro-batch = that best size)
   through the broker (a local Tansu started here, or ``--bootstrap``): the prompts are produced while the
   router is SIGSTOPped, then it is let go, and the rate is prompts / (last ``routed_at`` - that moment);
   then, at fixed offered rates (``--loads`` of that maximum, ``--load-s`` each; ``--soak-s`` for the last),
   the added latency per prompt (``routed_at - submitted_at``, from the messages read back afterwards),
   the consumer lag and the router's RSS, sampled every second;
3. the inference worker + Redis alone (routed messages produced straight to the routed topics), and the whole
   pipeline into Redis with the replay LLM server at zero latency (``RequestResult.finished_at``).

Progress goes to stderr; the table (or with ``--json`` one object) to stdout. Without ``--artifact`` the
classifier artefact is built first if it is not cached (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from loadgen.bench_common import load_bodies, log, rss_mb
from loadgen.bench_pipeline import PipelineRig, inference_alone, pipeline
from loadgen.bench_router import RouterRig, at_rate, classifier_ceiling, max_throughput, warm_up
from loadgen.procs import Procs, settings_env
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.local.services import Service, start_broker, start_redis, start_replay
from workers.settings import InferenceSettings, RouterSettings, Settings, Topics

TARGETS = {"classifier_per_s": 300.0, "router_ratio": 0.9, "p99_ms_at_80": 100.0, "inference_per_s": 2000.0}


def settings(args: argparse.Namespace, bootstrap: str, redis: str, llm: str, tag: str, batch: int) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        redis_url=SecretStr(redis),
        llm_base_url=llm,
        topics=Topics(
            prompts=f"bench-p-{tag}", reasoning=f"bench-r-{tag}", direct=f"bench-d-{tag}", dead=f"bench-x-{tag}"
        ),
        partitions=args.partitions,
        router=RouterSettings(group=f"bench-router-{tag}", batch_max=batch, artifact_dir=args.artifact_path),
        inference=InferenceSettings(group=f"bench-inference-{tag}"),
        session_timeout_ms=20_000,
        cache_dir=args.cache_path,
    )


async def run(args: argparse.Namespace, work: Path, servers: dict[str, Service]) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    bodies = load_bodies(args.prompts, heldout=True)  # never trained on: the first tier's share is not flattered
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    depth = RouterSettings().depth  # batches in the classifier at once, as the router keeps them
    sweep_n = min(args.sweep_prompts, len(bodies))
    # side by side, alternating: the encoder for every prompt (the previous classifier), then as the router runs it
    enc = [classifier_ceiling(args.artifact_path, bodies, sizes, sweep_n, depth, first_tier=False)]
    tiered = [classifier_ceiling(args.artifact_path, bodies, sizes, sweep_n, depth)]
    enc.append(classifier_ceiling(args.artifact_path, bodies, sizes, sweep_n, depth, first_tier=False))
    tiered.append(classifier_ceiling(args.artifact_path, bodies, sizes, sweep_n, depth))
    clf = max(tiered, key=lambda r: r["per_s"])
    enc_per_s = [r["per_s"] for r in enc]
    tier_per_s = [r["per_s"] for r in tiered]
    batch = args.router_batch
    bootstrap = args.bootstrap or servers["broker"].address
    redis_url = f"redis://{servers['redis'].address}/0"
    llm = f"http://{servers['replay'].address}/v1"
    uniq = uuid.uuid4().hex[:8]
    s_router = settings(args, bootstrap, redis_url, llm, f"a{uniq}", batch)
    s_pipe = settings(args, bootstrap, redis_url, llm, f"b{uniq}", batch)
    kc = kafka_config(s_router)
    for s in (s_router, s_pipe):
        t = s.topics
        await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], args.partitions)
    procs = Procs(work / "workers", settings_env(s_pipe))
    producer = make_producer(kc)
    await producer.start()
    redis = Redis.from_url(redis_url)
    try:
        t = s_router.topics
        router = procs.start("router", "router", **settings_env(s_router))
        rig = RouterRig(
            kc,
            producer,
            router,
            s_router.router.group,
            t.prompts,
            (t.reasoning, t.direct),
            args.partitions,
            args.timeout_s,
            watch={"router": router.proc.pid, "bench": os.getpid()}
            | ({"broker": servers["broker"].proc.pid} if "broker" in servers else {}),
        )
        log(f"router process {router.proc.pid} (batch {batch}): warming up")
        await warm_up(rig, bodies)
        rss = [rss_mb(router.proc.pid)]
        top, routed = await max_throughput(rig, bodies)
        rss.append(rss_mb(router.proc.pid))
        loads = []
        shares = [float(x) for x in args.loads.split(",")]
        for i, share in enumerate(shares):
            seconds = args.soak_s if (i == len(shares) - 1 and args.soak_s) else args.load_s
            phase = await at_rate(rig, bodies, share * top["per_s"], seconds, share)
            rss += [p["rss_mb"] for p in phase["series"]]
            loads.append(phase)
        rss.append(rss_mb(router.proc.pid))
        procs.procs.pop("router").stop(timeout=20)

        tp = s_pipe.topics
        inference = procs.start("inference", "inference")
        prig = PipelineRig(producer, redis, inference, tp.reasoning, tp.direct, args.timeout_s)
        inf = await inference_alone(prig, routed, args.inference_prompts or len(bodies))
        router2 = procs.start("router-pipeline", "router")
        pipe = await pipeline(prig, router2, tp.prompts, bodies, bodies)
    finally:
        await producer.stop()
        await redis.aclose()
        procs.stop_all()
    at80 = min(loads, key=lambda p: abs(p["share"] - 0.8)) if loads else None
    c = clf["per_s"]
    return {
        "prompts": len(bodies),
        "cpu_count": os.cpu_count(),
        "providers": clf["providers"],
        "classifier_version": clf["version"],
        "classifier_per_s": round(c, 1),
        "classifier_batch": clf["batch"],
        "classifier_p99_batch_ms": round(clf["p99_batch_ms"], 1),
        "classifier_sweep_per_s": clf["sweep"],
        "encoder_only_per_s": [round(x, 1) for x in enc_per_s],
        "first_tier_per_s": [round(x, 1) for x in tier_per_s],
        "first_tier_ratio": round(sum(tier_per_s) / sum(enc_per_s), 3),
        "first_tier_share": round(clf["tier_share"], 4),
        "lexical_tier_alone_per_s": round(clf["tier_alone_per_s"] or 0.0, 1),
        "router_batch": batch,
        "router_per_s": round(top["per_s"], 1),
        "router_ratio": round(top["per_s"] / c, 3),
        "pipeline_per_s": round(pipe["per_s"], 1),
        "pipeline_ratio": round(pipe["per_s"] / c, 3),
        "inference_per_s": round(inf["per_s"], 1),
        "added_latency_ms": at80["added_latency_ms"] if at80 else {},
        "added_latency_at_share": at80["share"] if at80 else None,
        "load": loads,
        "router_rss_mb": {"start": round(rss[0], 1), "max": round(max(rss), 1), "end": round(rss[-1], 1)},
        "broker": args.bootstrap or "tansu (local)",
        "loadavg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "wall_s": round(time.monotonic() - started, 1),
        "targets": TARGETS,
    }


def table(r: dict[str, Any]) -> str:
    lat = r["added_latency_ms"]
    rows = [
        ("prompts", f"{r['prompts']} (MMLU-Pro), {r['cpu_count']} CPUs, {r['providers'][0]}"),
        (
            "classifier alone",
            f"{r['classifier_per_s']:.0f} prompts/s at batch {r['classifier_batch']}"
            f" (p99 {r['classifier_p99_batch_ms']:.0f} ms/batch; sweep {r['classifier_sweep_per_s']})",
        ),
        (
            "first tier vs encoder",
            f"{r['first_tier_ratio']:.2f}x (encoder only {r['encoder_only_per_s']}, first tier"
            f" {r['first_tier_per_s']} prompts/s, alternating; the tier decides {r['first_tier_share']:.0%},"
            f" {r['lexical_tier_alone_per_s']:.0f} prompts/s alone)",
        ),
        ("router via broker", f"{r['router_per_s']:.0f} prompts/s = {r['router_ratio']:.0%} of the classifier"),
        ("pipeline into Redis", f"{r['pipeline_per_s']:.0f} prompts/s = {r['pipeline_ratio']:.0%} of the classifier"),
        ("inference + Redis", f"{r['inference_per_s']:.0f} results/s"),
    ]
    for p in r["load"]:
        la = p["added_latency_ms"]
        lags = " ".join(str(s["lag"]) for s in p["series"][:30])
        rows.append(
            (
                f"router at {p['share']:.0%} load",
                f"{p['offered_per_s']:.0f}/s offered, added latency p50 {la['p50']:.0f}"
                f" / p95 {la['p95']:.0f} / p99 {la['p99']:.0f} ms; lag per s: {lags}",
            )
        )
    rows.append(
        (
            "added latency",
            f"p50 {lat.get('p50', 0):.0f} / p95 {lat.get('p95', 0):.0f} / p99 {lat.get('p99', 0):.0f} ms"
            f" at {r['added_latency_at_share'] or 0:.0%} load",
        )
    )
    m = r["router_rss_mb"]
    rows.append(("router RSS", f"start {m['start']:.0f} MB, max {m['max']:.0f} MB, end {m['end']:.0f} MB"))
    rows.append(
        (
            "load average (1 min)",
            f"{r['loadavg_1m']['before']} before, {r['loadavg_1m']['after']} after; wall {r['wall_s']}s",
        )
    )
    return "\n".join(f"{k:>22}  {v}" for k, v in rows)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadgen bench", description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=2000, help="prompts per phase (real MMLU-Pro text)")
    p.add_argument("--batch-sizes", default="16,32,64,128", help="classifier batch sizes to try")
    p.add_argument("--sweep-prompts", type=int, default=512, help="prompts per batch size in the sweep")
    p.add_argument(
        "--router-batch",
        type=int,
        default=16,
        help="router micro-batch: small keeps latency low; on CPU the classifier runs prompt by prompt anyway",
    )
    p.add_argument("--loads", default="0.5,0.7,0.8", help="offered rates, as shares of the router maximum")
    p.add_argument("--load-s", type=float, default=15.0, help="seconds per offered rate")
    p.add_argument("--soak-s", type=float, default=None, help="seconds of the last (80%%) rate, for the memory check")
    p.add_argument("--inference-prompts", type=int, default=None, help="routed messages for inference + Redis alone")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--bootstrap", default=None, help="an existing Kafka (default: start a local Tansu broker)")
    p.add_argument("--artifact", default=None, help="classifier artefact dir (default: the cached build)")
    p.add_argument("--cache-dir", default=str(Settings().cache_dir))
    p.add_argument("--timeout-s", type=float, default=300.0, help="longest wait for one phase to drain")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.cache_path = Path(args.cache_dir).expanduser()
    if args.artifact:
        args.artifact_path = Path(args.artifact)
    else:
        from workers.classifier.cache import ensure_artifact

        log("classifier artefact: the cached build (built first if missing: about 2 minutes on 2 cores)")
        args.artifact_path = ensure_artifact(args.cache_path, progress=False)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up the servers and workers on SIGTERM too
    signal.signal(signal.SIGINT, _interrupt)  # even when started in the background with SIGINT ignored
    work = Path(tempfile.mkdtemp(prefix="thinkroute-bench-"))
    servers: dict[str, Service] = {}
    try:
        what = "Redis" if args.bootstrap else "Tansu, Redis"
        log(f"starting {what} and the replay LLM server (time scale 0) in {work}")
        if not args.bootstrap:
            servers["broker"] = start_broker(work / "broker")
        servers["redis"] = start_redis(work / "redis")
        servers["replay"] = start_replay(work / "replay", time_scale=0.0)
        result = asyncio.run(run(args, work, servers))
    finally:
        for svc in reversed(list(servers.values())):
            svc.stop()
    print(json.dumps(result, sort_keys=True) if args.json else table(result))


if __name__ == "__main__":
    main()
