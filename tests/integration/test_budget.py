"""Job budgets through the real pipeline: a planned job shared by two routers in one group realises exactly
its plan, and a plan altered on the topic is rejected by the inference worker's admission."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from loadgen.procs import settings_env
from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from tests.helpers import wait_until
from tests.integration.helpers import read_topic, running, sample_requests
from tests.integration.test_cli_run import SAMPLE as PROMPTS_20
from tests.integration.test_cli_run import embedded_env, thinkroute
from tests.integration.test_integrity import produce_attacks
from tests.integration.test_metrics import scrape, total
from workers.classifier.model import Classifier
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.local.services import free_port
from workers.router.plan import Budget, plan_job
from workers.router.policy import load_policy
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.integrity import Verdict
from workers.store.jobstore import Store
from workers.submit.jobs import submit, summary, wait_for_job

pytestmark = pytest.mark.integration


async def test_two_routers_realise_a_budgeted_jobs_plan_exactly(
    settings: Settings, artifact: Path, redis: Redis
) -> None:
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], settings.partitions)
    requests = sample_requests(200)
    with Classifier.load(artifact) as classifier:
        policy = load_policy(None, classifier.labels)
        job_plan, plans = plan_job(
            classifier, policy, [(r.custom_id, r.body) for r in requests], Budget.parse("share=0.3")
        )
    assert job_plan is not None and job_plan.planned_reasoning == 60
    planned = {r.custom_id: p for r, p in zip(requests, plans, strict=True)}
    want = {cid for cid, p in planned.items() if p is not None and p.route == "reasoning"}

    ports = [free_port(), free_port()]
    routers = [
        settings.model_copy(
            update={"metrics_host": "127.0.0.1", "router": settings.router.model_copy(update={"metrics_port": p})}
        )
        for p in ports
    ]
    inference = settings.model_copy(update={"inference": settings.inference.model_copy(update={"metrics_port": 0})})
    store = Store(redis)
    producer = make_producer(kc)
    await producer.start()
    try:
        async with running(
            lambda stop: serve_router(routers[0], stop, artifact),
            lambda stop: serve_router(routers[1], stop, artifact),
            lambda stop: serve_inference(inference, stop),
        ) as w:

            async def both_own_a_partition() -> bool:
                w.check()
                try:
                    owned = [
                        total(await scrape(f"http://127.0.0.1:{p}/metrics"), "thinkroute_assigned_partitions")
                        for p in ports
                    ]
                except httpx.TransportError:
                    return False
                return min(owned) > 0 and sum(owned) == settings.partitions

            await wait_until(both_own_a_partition, 90, "two routers to share the prompt partitions")
            meta = await submit(producer, store, t.prompts, requests, source="budget", plan=(job_plan, plans))
            totals = await wait_for_job(store, meta, check=w.check, timeout_s=180)
            assert (totals.completed, totals.failed) == (200, 0)
            decided = [
                total(await scrape(f"http://127.0.0.1:{p}/metrics"), "thinkroute_reasoning_decisions_total")
                for p in ports
            ]
            assert min(decided) > 0, decided  # each router routed part of the job

            # the routed topics hold exactly the plan: 60 of 200 (30.0%) on reasoning
            on_reasoning = {
                RoutedMessage.model_validate_json(r.value).prompt.custom_id
                for r in await read_topic(kc.bootstrap, t.reasoning, 60)
            }
            on_direct = {
                RoutedMessage.model_validate_json(r.value).prompt.custom_id
                for r in await read_topic(kc.bootstrap, t.direct, 140)
            }
            assert on_reasoning == want and on_direct == set(planned) - want
            results = {r.custom_id: r async for r in store.results(meta.job_id)}
            for cid, res in results.items():
                p = planned[cid]
                assert p is not None and res.route.route == p.route, cid
                assert (res.route.reason, res.route.budget) == ("plan:share=0.3", "share=0.3")
                assert res.route.job_threshold == job_plan.threshold
                assert res.route.priority == pytest.approx(p.priority, abs=1e-5)  # the router's own score
            s = await summary(store, meta)
            assert s["plan"]["budget"] == "share=0.3" and s["plan"]["threshold"] == job_plan.threshold
            assert s["plan"]["planned"]["reasoning"] == s["plan"]["realised"]["reasoning"] == 60
            assert s["plan"]["realised"]["share"] == 0.3

            # a plan flipped on the topic (re-serialised, no secret to re-sign it) is rejected at admission
            raw = await read_topic(kc.bootstrap, t.prompts, 200)
            victim = next(m for r in raw if (m := PromptMessage.model_validate_json(r.value)).custom_id in want)
            assert victim.plan is not None
            flipped = victim.model_copy(update={"plan": victim.plan.model_copy(update={"route": "direct"})})
            assert await store.admit(victim) == Verdict.DONE and await store.admit(flipped) == Verdict.BAD_MAC
            await produce_attacks(kc.bootstrap, t.prompts, [flipped])
            dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, 1, 60)]
            assert dead[0].reason.startswith("rejected (bad_mac)") and dead[0].topic == t.direct
            assert RoutedMessage.model_validate_json(base64.b64decode(dead[0].value_b64)).prompt == flipped
            after = await store.totals(meta.job_id)
            assert after.routes["reasoning"].requests == 60 and after.routes["direct"].requests == 140
    finally:
        await producer.stop()


def test_run_with_a_reasoning_share_realises_5_of_20(artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = thinkroute(
        "run",
        str(PROMPTS_20),
        "--reasoning-share",
        "0.25",
        "--json",
        "--time-scale",
        "0",
        "-o",
        str(out),
        env=embedded_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["routes"] == {"reasoning": 5, "direct": 15}
    plan = summary["plan"]
    assert (plan["budget"], plan["planned"]["reasoning"], plan["realised"]["reasoning"]) == ("share=0.25", 5, 5)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(x["route"]["use_reasoning"] for x in lines) == 5
    assert {x["route"]["reason"] for x in lines} == {"plan:share=0.25"}
    assert {x["route"]["job_threshold"] for x in lines} == {plan["threshold"]}


def test_budget_flags_are_checked_before_anything_runs() -> None:
    both = thinkroute(
        "run", str(PROMPTS_20), "--reasoning-share", "0.2", "--reasoning-tokens", "100", env=embedded_env()
    )
    assert both.returncode == 2 and "exclude each other" in both.stderr
    bad = thinkroute("run", str(PROMPTS_20), "--reasoning-share", "1.5", env=embedded_env())
    assert bad.returncode == 2 and "in [0, 1]" in bad.stderr


def test_submit_with_a_token_budget_plans_and_status_shows_the_plan(settings: Settings) -> None:
    env = settings_env(settings)
    submitted = thinkroute(
        "submit", str(PROMPTS_20), "--reasoning-tokens", "7000", "--explore", "0.1", "--json", env=env
    )
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    sub = json.loads(submitted.stdout)
    plan = sub["plan"]
    assert (plan["budget"], plan["explore_total"], plan["policy_version"]) == ("tokens=7000", 2, "score-v1")
    assert plan["planned_reasoning"] == 5 and plan["expected_reasoning_tokens"] == 5 * 1394  # the flat model
    status = thinkroute("status", sub["job_id"], "--json", env=env)
    assert status.returncode == 0, status.stderr[-2000:]
    shown = json.loads(status.stdout)["plan"]  # no workers run here: planned, nothing routed yet
    assert (shown["budget"], shown["threshold"], shown["planned"]["reasoning"]) == ("tokens=7000", plan["threshold"], 5)
    assert shown["realised"] == {"reasoning": 0, "share": 0.0, "reasoning_tokens": 0}
    text = thinkroute("status", sub["job_id"], env=env)
    assert "plan tokens=7000" in text.stdout and "5 of 20 planned to reasoning (25.0%)" in text.stdout
