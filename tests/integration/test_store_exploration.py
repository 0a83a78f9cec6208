"""Exploration accounting in Redis (Valkey): WRITE_EXPLORATION's return codes, its own bucket, the done
condition over results and shadow answers, admission against the explored set, FAIL discarding it all."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from schemas.chat import ChatBody
from schemas.messages import PromptMessage, PromptPlan
from schemas.records import ExplorationRecord, JobMeta, JobPlan, RequestResult, RouteTotals
from tests.factories import BODY, explored_pair
from tests.integration.helpers import register
from tests.integration.test_cli_run import embedded_env, thinkroute
from workers.evaluation.outcomes import read_outcomes
from workers.local.services import Service
from workers.store.integrity import Verdict, new_secret, sign
from workers.store.jobstore import Store, exploration_key, explored_key, meta_key
from workers.submit.outcomes import outcomes_of

pytestmark = pytest.mark.integration


def pairs(job: str, n: int) -> list[tuple[RequestResult, ExplorationRecord]]:
    out = []
    for i in range(1, n + 1):
        routed = "reasoning" if i % 2 else "direct"
        r, e = explored_pair(i, "math", routed, (100 * i, True, "A"), (10 * i, True, "A"), job=job)
        usage = e.usage.model_copy(update={"prompt_tokens": i, "reasoning_tokens": 5 * i if routed == "direct" else 0})
        out.append((r, e.model_copy(update={"usage": usage})))
    return out


def meta(job: str, total: int, explore_total: int) -> JobMeta:
    plan = JobPlan(explore=1.0, explore_total=explore_total) if explore_total else None
    return JobMeta(job_id=job, total=total, source="t", submitted_at=time.time(), plan=plan)


async def test_shadow_answers_count_once_in_their_own_bucket(redis: Redis, unique: str) -> None:
    store, job = Store(redis), f"job-ex-{unique}"
    ps = pairs(job, 4)
    await register(store, meta(job, 4, 4), [r.request_id for r, _ in ps])
    assert await redis.hget(meta_key(job), "explore_total") == b"4"
    failed = ps[3][1].model_copy(update={"status": "failed", "usage": ps[3][1].usage.model_copy(update={})})
    shadows = [e for _, e in ps[:3]] + [failed]
    written = await asyncio.gather(*[store.write_exploration(e) for e in shadows * 3])  # a redelivery storm
    assert sum(written) == 4
    t = await store.totals(job)
    assert (t.completed, t.failed) == (0, 0)  # nothing in the routed counters
    assert all(rt == RouteTotals() for rt in t.routes.values())
    for route in ("reasoning", "direct"):
        mine = [e for e in shadows if e.route.route == route]
        x = t.exploration[route]
        assert (x.requests, x.completed, x.failed) == (
            len(mine),
            sum(e.status == "completed" for e in mine),
            sum(e.status == "failed" for e in mine),
        )
        assert x.prompt_tokens == sum(e.usage.prompt_tokens for e in mine)
        assert x.completion_tokens == sum(e.usage.completion_tokens for e in mine)
        assert x.reasoning_tokens == sum(e.usage.reasoning_tokens for e in mine)
    stored = sorted([e async for e in store.explorations(job)], key=lambda e: e.line)
    assert stored == sorted(shadows, key=lambda e: e.line)


async def test_done_only_when_every_result_and_shadow_answer_is_in(redis: Redis, unique: str) -> None:
    store, job = Store(redis), f"job-ed-{unique}"
    ps = pairs(job, 3)
    await register(store, meta(job, 3, 2), [r.request_id for r, _ in ps])  # 2 of the 3 explored
    for r, _ in ps:
        assert await store.write_result(r)
    assert (await store.job_meta(job)).state == "running"  # type: ignore[union-attr]
    assert await store.write_exploration(ps[0][1])
    assert (await store.job_meta(job)).state == "running"  # type: ignore[union-attr]
    assert await store.write_exploration(ps[1][1])
    assert (await store.job_meta(job)).state == "done"  # type: ignore[union-attr]

    # the other order: shadows first, the last result makes it done
    job2 = f"job-ed2-{unique}"
    ps2 = pairs(job2, 2)
    await register(store, meta(job2, 2, 2), [r.request_id for r, _ in ps2])
    for _, e in ps2:
        assert await store.write_exploration(e)
    assert await store.write_result(ps2[0][0])
    assert (await store.job_meta(job2)).state == "running"  # type: ignore[union-attr]
    assert await store.write_result(ps2[1][0])
    assert (await store.job_meta(job2)).state == "done"  # type: ignore[union-attr]

    # START: all in before every prompt was acknowledged -> done at once; a result alone is not enough
    job3, job4 = f"job-ed3-{unique}", f"job-ed4-{unique}"
    for j, want in ((job3, "done"), (job4, "running")):
        (r, e) = pairs(j, 1)[0]
        await store.register_job(meta(j, 1, 1), [r.request_id], new_secret())
        assert await store.write_result(r)
        if want == "done":
            assert await store.write_exploration(e)
        assert await store.start_job(j) == want

    # a job without a sample is done on its results alone (no explore_total field)
    job5 = f"job-ed5-{unique}"
    (r, _) = pairs(job5, 1)[0]
    await register(store, meta(job5, 1, 0), [r.request_id])
    assert await redis.hget(meta_key(job5), "explore_total") is None
    assert await store.write_result(r)
    assert (await store.job_meta(job5)).state == "done"  # type: ignore[union-attr]


async def test_write_exploration_refuses_unregistered_and_failed_jobs(redis: Redis, unique: str) -> None:
    store, job = Store(redis), f"job-er-{unique}"
    (r, e), (_, other) = pairs(job, 2)
    await register(store, meta(job, 1, 1), [r.request_id])
    keys = [explored_key(job), exploration_key(job, other.request_id), f"tr:{{{job}}}:totals", f"tr:{{{job}}}:ids"]
    args = [other.request_id, other.model_dump_json(), "completed", "direct", 1, 2, 3]
    assert await store._explore(keys=[*keys, meta_key(job)], args=args) == -1  # not registered: nothing changes
    assert not await store.write_exploration(other)
    assert not await redis.exists(explored_key(job), exploration_key(job, other.request_id))
    assert await store.write_exploration(e)
    assert not await store.write_exploration(e)  # 0: a redelivery

    # FAIL discards the explored set and its records with the rest; later writes are refused (-2)
    job2 = f"job-ef-{unique}"
    (r2, e2), (_, e3) = pairs(job2, 2)
    await store.register_job(meta(job2, 2, 2), [r2.request_id, e3.request_id], new_secret())
    assert await store.write_result(r2) and await store.write_exploration(e2)
    assert await store.fail_job(job2, "test")
    assert not await redis.exists(explored_key(job2), exploration_key(job2, e2.request_id))
    assert (await store.totals(job2)).exploration["direct"] == RouteTotals()
    assert not await store.write_exploration(e3)  # refused: its ids are gone with the job
    assert not await redis.exists(explored_key(job2), exploration_key(job2, e3.request_id))

    # -2: the failed-job check of the script itself (a job marked failed whose ids are still there)
    job3 = f"job-eg-{unique}"
    (_, e4) = pairs(job3, 1)[0]
    await register(store, meta(job3, 1, 1), [e4.request_id])
    await redis.hset(meta_key(job3), "state", "failed")
    keys = [explored_key(job3), exploration_key(job3, e4.request_id), f"tr:{{{job3}}}:totals", f"tr:{{{job3}}}:ids"]
    args = [e4.request_id, e4.model_dump_json(), "completed", "direct", 1, 2, 3]
    assert await store._explore(keys=[*keys, meta_key(job3)], args=args) == -2
    assert not await redis.exists(explored_key(job3), exploration_key(job3, e4.request_id))


async def test_a_shadow_is_admitted_against_the_explored_set(redis: Redis, unique: str) -> None:
    store, job = Store(redis), f"job-ea-{unique}"
    (r, e) = pairs(job, 1)[0]
    secret = await register(store, meta(job, 1, 1), [r.request_id])
    fields = {"request_id": r.request_id, "job_id": job, "custom_id": r.custom_id, "line": 1, "submitted_at": 1.0}
    unexplored = sign(PromptMessage(**fields, body=BODY), secret)
    prompt = sign(PromptMessage(**fields, body=BODY, plan=PromptPlan(explore=True)), secret)
    assert await store.admit(unexplored, shadow=True) is Verdict.NOT_EXPLORED  # not signed into the sample
    flipped = unexplored.model_copy(update={"plan": PromptPlan(explore=True)})  # put in by someone on the topic
    assert await store.admit(flipped, shadow=True) is Verdict.BAD_MAC
    assert await store.write_result(r)
    assert await store.admit(prompt) is Verdict.DONE  # the routed one is answered
    assert await store.admit(prompt, shadow=True) is Verdict.OK  # its shadow is not blocked by it
    assert await store.write_exploration(e)
    assert await store.admit(prompt, shadow=True) is Verdict.DONE
    forged = prompt.model_copy(update={"body": BODY.model_copy(update={"max_tokens": 7})})
    assert await Store(redis).admit(forged, shadow=True) is Verdict.BAD_MAC


async def test_export_outcomes_writes_the_jobs_explored_pairs(
    redis: Redis, redis_server: Service, unique: str, tmp_path: Path
) -> None:
    store, job = Store(redis), f"job-eo-{unique}"
    ps = pairs(job, 3)
    await register(store, meta(job, 3, 3), [r.request_id for r, _ in ps])
    for r, e in ps:
        assert await store.write_result(r) and await store.write_exploration(e)
    out = tmp_path / "o.jsonl"
    env = embedded_env(THINKROUTE_REDIS_URL=f"redis://{redis_server.address}/0")
    proc = await asyncio.to_thread(thinkroute, "records", "export", job, "-o", str(out), "--json", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(proc.stdout)
    assert stats | {"path": ""} == {"path": "", "records": 3, "explored": 3, "graded": 3, "agreement": 0, "skipped": {}}
    assert read_outcomes(str(out)) == outcomes_of([r for r, _ in ps], [e for _, e in ps])
    missing = await asyncio.to_thread(thinkroute, "records", "export", "job-none", "-o", str(out), env=env, timeout=120)
    assert missing.returncode != 0 and "no job 'job-none'" in missing.stderr


async def test_fit_from_job_learns_from_the_jobs_exploration_sample(
    redis: Redis, redis_server: Service, unique: str, tmp_path: Path
) -> None:
    store, job = Store(redis), f"job-fj-{unique}"
    ps = []
    for i, (r, e) in enumerate(pairs(job, 30)):
        text = f"Question {i}: what is {i} times {i + 3}? Give the number."
        body = ChatBody.model_validate(
            BODY.model_dump(exclude_none=True) | {"messages": [{"role": "user", "content": text}]}
        )
        ps.append((r, e.model_copy(update={"body": body})))
    await register(store, meta(job, 30, 30), [r.request_id for r, _ in ps])
    for r, e in ps:
        assert await store.write_result(r) and await store.write_exploration(e)
    out = tmp_path / "policy.yaml"
    env = embedded_env(THINKROUTE_REDIS_URL=f"redis://{redis_server.address}/0")
    args = ["fit", "--from-job", job, "-o", str(out), "--features", "signals-v1", "--json"]
    proc = await asyncio.to_thread(thinkroute, *args, env=env, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: refused (not better), nothing written
    report = json.loads(proc.stdout)
    assert report["n"] == 30 and f"job:{job}" in json.dumps(report)
    assert out.exists() == (proc.returncode == 0) == report["accepted"]
    none = await asyncio.to_thread(thinkroute, "fit", "--from-job", "job-none", "-o", str(out), env=env, timeout=120)
    assert none.returncode == 2 and "no job 'job-none'" in none.stderr
