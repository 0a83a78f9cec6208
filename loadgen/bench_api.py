"""``python -m loadgen.bench_api``: the Batch API under load, through the official ``openai`` SDK.

On the embedded stack (``EmbeddedStack(api=True)``: Tansu, Valkey, the replay server at ``--time-scale``, one
router, ``--inference-workers`` inference workers and ``thinkroute serve`` as a child process), for each file
size in ``--sizes``: write a batch file of that many MMLU-Pro lines, upload it (``files.create``), create a
batch, and while it runs poll it with ``--pollers`` concurrent clients (each alternates ``batches.retrieve``
and ``batches.list(limit=20)``, one call every ``--poll-every`` seconds) until it is completed; then download
the output file (streamed, lines counted).

Printed per size: upload time, time to completed, the serve process's peak RSS during that size (VmHWM, reset
before each size through /proc/PID/clear_refs) and its RSS idle, the p50/p99 of retrieve and of list under the
pollers. The peak RSS across sizes is what "flat in file size" is checked by (a ratio, one machine, one run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from loadgen.bench_common import load_bodies, log, percentiles, rss_mb
from workers.classifier.cache import ensure_artifact
from workers.local.stack import EmbeddedStack
from workers.settings import Settings

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def write_file(path: Path, n: int) -> int:
    """``n`` OpenAI Batch request lines (custom ids ``r-<i>``); returns the file's size in bytes."""
    bodies = load_bodies(min(n, 12_000))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            body = bodies[i % len(bodies)].model_dump(mode="json", exclude_none=True)
            line = {"custom_id": f"r-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path.stat().st_size


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM) to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def poller(
    client: AsyncOpenAI, batch_id: str, done: asyncio.Event, out: dict[str, list[float]], every_s: float
) -> None:
    turn = 0
    await asyncio.sleep(every_s * random.random())  # the pollers spread over the interval
    while not done.is_set():
        t0 = time.perf_counter()
        if turn % 2 == 0:
            await client.batches.retrieve(batch_id)
            out["retrieve"].append(time.perf_counter() - t0)
        else:
            await client.batches.list(limit=20)
            out["list"].append(time.perf_counter() - t0)
        turn += 1
        await asyncio.sleep(max(every_s - (time.perf_counter() - t0), 0.0))


async def one_size(
    client: AsyncOpenAI, pid: int, work: Path, n: int, pollers: int, every_s: float, timeout_s: float
) -> dict[str, Any]:
    path = work / f"batch-{n}.jsonl"
    size = write_file(path, n)
    reset_peak(pid)
    t0 = time.perf_counter()
    uploaded = await client.files.create(file=path, purpose="batch")  # the SDK streams a Path
    upload_s = time.perf_counter() - t0
    batch = await client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    t1 = time.perf_counter()
    done = asyncio.Event()
    lat: dict[str, list[float]] = {"retrieve": [], "list": []}
    tasks = [asyncio.create_task(poller(client, batch.id, done, lat, every_s)) for _ in range(pollers)]
    try:
        async with asyncio.timeout(timeout_s):
            while batch.status not in TERMINAL:
                await asyncio.sleep(1.0)
                batch = await client.batches.retrieve(batch.id)
    finally:
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    run_s = time.perf_counter() - t1
    lines = 0
    if batch.output_file_id:
        content = await client.files.content(batch.output_file_id)
        async for chunk in content.response.aiter_bytes():  # the SDK's streamed body
            lines += chunk.count(b"\n")
    counts = batch.request_counts
    return {
        "lines": n,
        "file_mb": round(size / 2**20, 1),
        "status": batch.status,
        "completed": counts.completed if counts else None,
        "failed": counts.failed if counts else None,
        "output_lines": lines,
        "upload_s": round(upload_s, 2),
        "run_s": round(run_s, 1),
        "peak_rss_mb": round(peak_rss_mb(pid), 1),
        "retrieve_ms": {k: round(v * 1000, 1) for k, v in percentiles(lat["retrieve"]).items()},
        "list_ms": {k: round(v * 1000, 1) for k, v in percentiles(lat["list"]).items()},
        "polls": len(lat["retrieve"]) + len(lat["list"]),
    }


def table(rows: list[dict[str, Any]], idle_mb: float) -> str:
    out = [
        f"serve idle RSS: {idle_mb:.1f} MB",
        "| lines | file MB | upload s | to completed s | serve peak RSS MB | retrieve p50/p99 ms | list p50/p99 ms "
        "| polls | output lines |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['lines']:,} | {r['file_mb']} | {r['upload_s']} | {r['run_s']} | {r['peak_rss_mb']} "
            f"| {r['retrieve_ms']['p50']} / {r['retrieve_ms']['p99']} | {r['list_ms']['p50']} / {r['list_ms']['p99']} "
            f"| {r['polls']:,} | {r['output_lines']:,} |"
        )
    if len(rows) > 1:
        out.append(
            f"peak RSS ratio, {rows[-1]['lines']:,} vs {rows[0]['lines']:,} lines: "
            f"{rows[-1]['peak_rss_mb'] / max(rows[0]['peak_rss_mb'], 1e-9):.2f}"
        )
    return "\n".join(out)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    s = Settings().model_copy(update={"kafka_bootstrap": None})  # always the embedded stack
    ensure_artifact(s.cache_dir, progress=True)  # the router child loads it
    stack = EmbeddedStack(s, inference_workers=args.inference_workers, replay_time_scale=args.time_scale, api=True)
    try:
        env = await stack.start()
        api = next(svc for svc in stack.services if svc.name == "api")
        client = AsyncOpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"], max_retries=0)
        idle = rss_mb(api.proc.pid)
        rows = []
        for n in args.sizes:
            log(f"{n:,} lines ...")
            row = await one_size(client, api.proc.pid, stack.workdir, n, args.pollers, args.poll_every, args.timeout)
            rows.append(row)
            log(json.dumps(rows[-1]))
        await client.close()
        return {
            "idle_rss_mb": round(idle, 1),
            "rows": rows,
            "pollers": args.pollers,
            "poll_every_s": args.poll_every,
            "cpus": os.cpu_count(),
        }
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loadgen.bench_api", description=__doc__)
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[5_000, 50_000])
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--poll-every", type=float, default=0.5, help="seconds between one poller's calls (0: flat out)")
    ap.add_argument("--inference-workers", type=int, default=1)
    ap.add_argument("--time-scale", type=float, default=0.0, help="replay latency multiplier (0: instant)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per size, seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2) if args.json else table(result["rows"], result["idle_rss_mb"]))
    print(f"{result['pollers']} pollers, each a call every {result['poll_every_s']} s; {result['cpus']} CPUs")
    sys.exit(0)


if __name__ == "__main__":
    main()
