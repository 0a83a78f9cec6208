"""`thinkroute compare` through the whole pipeline against the replay server: the session's broker, Redis and
replay server, router and inference in-process; one job per policy, one after another."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from loadgen.procs import settings_env
from tests.helpers import ROOT
from tests.integration.helpers import running
from workers.cli.compare import CompareOptions, parse_policies, run_compare
from workers.data import QWEN3_THINK, read_jsonl
from workers.data.prompts import format_mcq_prompt
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config
from workers.replay.answer import ANSWER_TOKENS
from workers.replay.records import QWEN3_MODEL
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.batchfile import read_batch

pytestmark = pytest.mark.integration


def qwen3_file(path: Path, every: int) -> list[Mapping[str, Any]]:
    """Every ``every``-th Qwen3-record question as a batch line, rendered as loadgen/samples does (its answer
    letter as metadata.reference); returns the records."""
    rows = list(read_jsonl(QWEN3_THINK))[::every]
    lines = [
        {
            "custom_id": f"mmlu-pro-{q['question_id']}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": QWEN3_MODEL,
                "messages": [{"role": "user", "content": format_mcq_prompt(q["question"], q["options"])}],
                "max_tokens": 8192,  # over the longest record (8,000): nothing is cut
                "metadata": {"reference": q["answer"]},
            },
        }
        for q in rows
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    return rows


async def test_compare_reproduces_the_recorded_outcomes(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path
) -> None:
    file = tmp_path / "qwen3.jsonl"
    records = qwen3_file(file, every=6)
    assert 30 <= len(records) <= 40
    requests, bad = read_batch(file, settings.max_prompt_chars, settings.max_tokens)
    assert bad == []
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], settings.partitions)
    opts = CompareOptions(file, parse_policies("always,never,router"), 1, 0.0, 120.0, as_json=True)
    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ):
        report = await run_compare(settings, opts, requests)
    arms = {a["policy"]: a for a in report["arms"]}
    assert list(arms) == ["always", "never", "router"] and report["total"] == len(records)
    n = len(records)
    for name, mode in (("always", "think"), ("never", "nothink")):
        a = arms[name]
        assert (a["completed"], a["failed"], a["graded"]) == (n, 0, n)
        assert a["correct"] == sum(int(q[f"{mode}_correct"]) for q in records), name
        assert a["accuracy"] == round(sum(q[f"{mode}_correct"] for q in records) / n, 4)
        assert a["tokens"]["completion"] == sum(q[f"{mode}_n_tokens"] for q in records), name
        lo, hi = a["ci95"]
        assert lo < a["accuracy"] < hi or a["accuracy"] in (0.0, 1.0)
    assert arms["always"]["routes"] == {"reasoning": n, "direct": 0}
    assert arms["never"]["routes"] == {"reasoning": 0, "direct": n}
    assert arms["always"]["tokens"]["reasoning"] == sum(q["think_n_tokens"] - ANSWER_TOKENS for q in records)
    assert arms["never"]["tokens"]["reasoning"] == 0
    assert len({a["tokens"]["prompt"] for a in arms.values()}) == 1  # the same prompts, modelled the same way

    # the router's arm: each question's recorded outcome in the mode it was routed to
    router = arms["router"]
    store = Store(redis)
    routed = {r.custom_id: r.route.use_reasoning async for r in store.results(router["job_id"])}
    by_id = {f"mmlu-pro-{q['question_id']}": q for q in records}
    assert set(routed) == set(by_id)
    mode = {cid: "think" if think else "nothink" for cid, think in routed.items()}
    assert router["correct"] == sum(int(by_id[c][f"{m}_correct"]) for c, m in mode.items())
    assert router["tokens"]["completion"] == sum(by_id[c][f"{m}_n_tokens"] for c, m in mode.items())
    assert router["routes"]["reasoning"] == sum(routed.values())


async def test_compare_json_is_one_value_with_every_key(settings: Settings, artifact: Path, tmp_path: Path) -> None:
    file = tmp_path / "qwen3.jsonl"
    records = qwen3_file(file, every=41)  # 5 questions
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], settings.partitions)
    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ) as workers:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "workers", "compare", str(file), "--policies", "never,router", "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=settings_env(settings),
            cwd=ROOT,
        )
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
        workers.check()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert out.decode().count("\n") == 1
    report = json.loads(out)
    assert set(report) == {"file", "total", "arms"} and report["total"] == len(records) == 5
    assert [a["policy"] for a in report["arms"]] == ["never", "router"]
    for a in report["arms"]:
        assert set(a) == {
            "policy",
            "job_id",
            "total",
            "completed",
            "failed",
            "routes",
            "reasoning_share",
            "graded",
            "correct",
            "accuracy",
            "ci95",
            "tokens",
            "latency_s",
            "wall_s",
        }
        assert set(a["tokens"]) == {"prompt", "completion", "reasoning"}
        assert set(a["latency_s"]) == {"p50", "p95", "p99"}
        assert a["latency_s"]["p50"] <= a["latency_s"]["p95"] <= a["latency_s"]["p99"]
        assert (a["total"], a["completed"], a["graded"]) == (5, 5, 5) and 0 <= a["correct"] <= 5
        assert a["wall_s"] > 0 and len(a["ci95"]) == 2
    assert report["arms"][0]["reasoning_share"] == 0.0
