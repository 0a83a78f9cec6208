"""``python -m loadgen scale [--prompts 200000] [--small 20000]``: a whole job through ThinkRoute against a plain
asyncio OpenAI client sending the same prompts straight to the same server, and every process's peak RSS.

One run, one machine, one after the other (never at once): the embedded stack (Tansu memory engine, Valkey,
the replay LLM server at time scale 0 = zero latency, one router, ``--inference-workers`` inference workers)
is started here; for each size (``--small`` then ``--prompts``) a batch file of that many MMLU-Pro lines is
written (deterministic: the 200 sample lines, then seeded MMLU-Pro questions, repeating past 12,000; custom
ids ``r-<i>``) and ``thinkroute run FILE -o OUT`` runs it as a child process against that stack (what a user
runs; its wall time is the whole job: reading, validating, publishing, waiting, writing the output). Then the
plain client (``plain`` below, its own process: ``AsyncOpenAI``, as many requests in flight as the inference
workers' total concurrency, same bodies, same model and max_tokens, each answer written to a file) sends the
same file to the same replay server.

Reported per size: wall time and requests/s of each, ThinkRoute/plain ratio; peak RSS (VmHWM, reset before
each job through /proc/PID/clear_refs) of the CLI, the broker, Redis, the router, each inference worker, the
replay server and the plain client; Redis ``used_memory`` before the job and after it (results written) per
request; the broker's RSS growth per record (a prompt and its routed message: two records per request). The
output files are checked: one line per request, in input order. Progress on stderr; the table (``--json``:
one object) on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from unittest import mock

from redis.asyncio import Redis

from loadgen.bench_common import load_bodies, log
from loadgen.peak_rss import PeakWatch, status_kb
from workers.local import services

GIB = 1024**3
OBSERVER = "bench-observer"


def write_file(path: Path, n: int, chars: int = 0) -> int:
    """``n`` OpenAI Batch request lines (custom ids ``r-<i>``); returns the file's size in bytes. ``chars`` > 0:
    each prompt is the first ``chars`` characters of its MMLU-Pro question alone (no instructions, no
    options): fewer tokens for the router's classifier, whose cost grows with them up to its 128-token window."""
    bodies = [b.model_dump(mode="json", exclude_none=True) for b in load_bodies(min(n, 12_000))]
    if chars > 0:
        for body in bodies:
            text = body["messages"][-1]["content"]
            question = text.split("Question: ", 1)[-1].split("\nOptions:", 1)[0]
            body["messages"] = [{"role": "user", "content": question[:chars]}]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            line = {
                "custom_id": f"r-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": bodies[i % len(bodies)],
            }
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path.stat().st_size


def check_output(path: Path, n: int) -> int:
    """The output has one line per request, in input order (``r-0`` .. ``r-<n-1>``); the completed count."""
    completed = 0
    with open(path, encoding="utf-8") as f:
        for i, raw in enumerate(f):
            line = json.loads(raw)
            if line["custom_id"] != f"r-{i}":
                raise AssertionError(f"{path}: line {i + 1} is {line['custom_id']!r}, not 'r-{i}'")
            completed += line["error"] is None
    if i + 1 != n:
        raise AssertionError(f"{path}: {i + 1} lines for {n} requests")
    return completed


def observed(config: Callable[..., str], password: str) -> Callable[..., str]:
    """The stack's redis.conf plus a user that may run INFO only (ThinkRoute's own user may not)."""

    def conf(*args: Any, **kwargs: Any) -> str:
        return config(*args, **kwargs) + f"user {OBSERVER} on >{password} +info\n"

    return conf


async def used_memory(url: str) -> int:
    redis = Redis.from_url(url)
    try:
        info = await redis.info("memory")
        return int(info["used_memory"])
    finally:
        await redis.aclose()


def run_child(argv: list[str], env: dict[str, str], watch: PeakWatch, name: str, timeout: float) -> tuple[float, str]:
    """Run a child, its peak RSS watched as ``name``; its wall time and stdout (RuntimeError if it failed)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        watch.add(name, proc.pid)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} exited {code}:\n{stderr[-3000:]}")
    return wall, stdout


async def one_size(
    args: argparse.Namespace, stack: Any, observer_password: str, work: Path, n: int, concurrency: int
) -> dict[str, Any]:
    file = work / f"prompts-{n}.jsonl"
    size = write_file(file, n, args.prompt_chars)
    log(f"{n} prompts: {size / 1e6:.1f} MB in {file}")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}, **stack.env}
    redis = next(svc for svc in stack.services if svc.name == "redis")
    redis_url = f"redis://{OBSERVER}:{observer_password}@{redis.address}/0"
    pids = {svc.name: svc.proc.pid for svc in stack.children}
    broker = next(svc for svc in stack.services if svc.name == "broker")
    broker_before = status_kb(broker.proc.pid, "VmRSS")
    redis_before = await used_memory(redis_url)
    out = work / f"out-{n}.jsonl"
    argv = [
        sys.executable,
        "-m",
        "workers",
        "run",
        str(file),
        "-o",
        str(out),
        "--json",
        "--timeout",
        str(args.timeout_s),
    ]
    log(f"{n} prompts: thinkroute run (whole job)")
    with PeakWatch(pids) as tr_watch:
        tr_wall, stdout = await asyncio.to_thread(run_child, argv, env, tr_watch, "cli", args.timeout_s + 60)
    summary = json.loads(stdout)
    redis_after = await used_memory(redis_url)
    broker_after = status_kb(broker.proc.pid, "VmRSS")
    tr_completed = check_output(out, n)
    out.unlink()
    plain_out = work / f"plain-{n}.jsonl"
    llm = stack.env["THINKROUTE_LLM_BASE_URL"]
    argv = [sys.executable, "-m", "loadgen", "scale", "plain", str(file), llm, str(concurrency), str(plain_out)]
    log(f"{n} prompts: the plain AsyncOpenAI client, {concurrency} in flight")
    with PeakWatch({}) as plain_watch:
        plain_wall, stdout = await asyncio.to_thread(run_child, argv, env, plain_watch, "plain", args.timeout_s)
    plain = json.loads(stdout)
    plain_out.unlink()
    file.unlink()
    return {
        "prompts": n,
        "file_mb": round(size / 1e6, 1),
        "thinkroute": {
            "wall_s": round(tr_wall, 2),
            "per_s": round(n / tr_wall, 1),
            "completed": tr_completed,
            "failed": summary["failed"],
            "peak_rss_mb": tr_watch.peak,
        },
        "plain": {
            "wall_s": round(plain_wall, 2),
            "per_s": round(n / plain_wall, 1),
            "completed": plain["completed"],
            "failed": plain["failed"],
            "peak_rss_mb": {"plain": plain_watch.peak.get("plain", 0.0)},
        },
        "ratio": round(plain_wall / tr_wall, 3),
        "redis_bytes_per_request": round((redis_after - redis_before) / n),
        "broker_bytes_per_record": round((broker_after - broker_before) * 1024 / (2 * n)),
    }


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from workers.classifier.cache import ensure_artifact
    from workers.local.stack import EmbeddedStack
    from workers.settings import Settings

    s = Settings()
    ensure_artifact(s.cache_dir, progress=False)
    concurrency = args.inference_workers * s.inference.concurrency
    stack = EmbeddedStack(s, inference_workers=args.inference_workers, replay_time_scale=0.0)
    password = secrets.token_urlsafe(16)
    try:
        with mock.patch.object(services, "redis_config", observed(services.redis_config, password)):
            await stack.start()
        rows: list[dict[str, Any]] = []
        for n in args.sizes:
            rows.append(await one_size(args, stack, password, work, n, concurrency))
            log(f"{n} prompts: {json.dumps(rows[-1], sort_keys=True)}")
    finally:
        stack.stop()
    out: dict[str, Any] = {"cpu_count": os.cpu_count(), "concurrency": concurrency, "sizes": rows}
    out["prompt_chars"] = args.prompt_chars
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        cli = large["thinkroute"]["peak_rss_mb"]["cli"] / max(small["thinkroute"]["peak_rss_mb"]["cli"], 1e-9)
        out["cli_rss_ratio"] = round(cli, 3)
        out["size_ratio"] = round(large["prompts"] / small["prompts"], 3)
    last = rows[-1]
    per_request = 2 * last["broker_bytes_per_record"] + last["redis_bytes_per_request"]
    out["bytes_per_request"] = per_request  # what the broker and Redis keep per request, both growing with the job
    out["budget_gib"] = args.budget_gb
    out["embedded_capacity"] = int(args.budget_gb * GIB / max(per_request, 1))
    return out


def table(r: dict[str, Any]) -> str:
    lines = [f"{r['cpu_count']} CPUs, {r['concurrency']} requests in flight (both)"]
    for row in r["sizes"]:
        tr, plain = row["thinkroute"], row["plain"]
        lines.append(
            f"{row['prompts']:>8} prompts ({row['file_mb']} MB): thinkroute {tr['wall_s']}s = {tr['per_s']}/s "
            f"({tr['completed']} completed), plain client {plain['wall_s']}s = {plain['per_s']}/s "
            f"({plain['completed']} completed): ratio {row['ratio']}"
        )
        rss = " ".join(f"{k} {v:.0f}" for k, v in sorted({**tr["peak_rss_mb"], **plain["peak_rss_mb"]}.items()))
        lines.append(f"{'':>10}peak RSS MB: {rss}")
        lines.append(
            f"{'':>10}Redis {row['redis_bytes_per_request']} bytes/request, broker "
            f"{row['broker_bytes_per_record']} bytes/record"
        )
    if "cli_rss_ratio" in r:
        lines.append(f"CLI peak RSS ratio {r['cli_rss_ratio']} for {r['size_ratio']}x the prompts")
    lines.append(
        f"broker + Redis keep {r['bytes_per_request']} bytes/request: {r['budget_gib']} GiB hold about "
        f"{r['embedded_capacity']} requests"
    )
    return "\n".join(lines)


async def plain(src: IO[str], dst: IO[str], base_url: str, concurrency: int) -> dict[str, Any]:
    """What a user would write instead: the official SDK, ``concurrency`` tasks each taking the next line of
    the input, every answer written to ``dst`` (JSON lines, in completion order)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=2)
    counts = {"completed": 0, "failed": 0}

    async def worker() -> None:
        while raw := src.readline():
            line = json.loads(raw)
            body = {k: v for k, v in line["body"].items() if k != "metadata"}  # ThinkRoute's own field, not the LLM's
            try:
                answer = await client.chat.completions.create(**body)
            except Exception:
                counts["failed"] += 1
                continue
            counts["completed"] += 1
            dst.write(json.dumps({"custom_id": line["custom_id"], "response": answer.model_dump()}) + "\n")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()
    return counts


def main(argv: list[str] | None = None) -> None:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["plain"]:
        _, file, base_url, concurrency, out = args_in
        with open(file, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
            counts = asyncio.run(plain(src, dst, base_url, int(concurrency)))
        print(json.dumps(counts))
        return
    p = argparse.ArgumentParser(prog="python -m loadgen scale", description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=200_000, help="the job's size")
    p.add_argument("--small", type=int, default=20_000, help="a smaller job first, for the CLI's RSS ratio (0: none)")
    p.add_argument("--inference-workers", type=int, default=1)
    p.add_argument(
        "--prompt-chars", type=int, default=0, help="prompts cut to this many characters of the question (0: whole)"
    )
    p.add_argument("--budget-gb", type=float, default=20.0, help="memory for the broker's records and Redis (of 24 GB)")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="longest wait for one job")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(args_in)
    args.sizes = [n for n in (args.small, args.prompts) if n > 0]
    with tempfile.TemporaryDirectory(prefix="thinkroute-scale-") as work:
        result = asyncio.run(run(args, Path(work)))
    print(json.dumps(result, sort_keys=True) if args.json else table(result))


if __name__ == "__main__":
    main()
