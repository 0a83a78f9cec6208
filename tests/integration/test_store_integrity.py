"""Who may change a job, against the real Redis: each verdict of ``Store.admit``, the writes the Lua scripts
refuse, and a job's life (submitting -> running -> done, or failed with nothing counted)."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from schemas.batch import ChatBody
from schemas.messages import AttemptSummary, PromptMessage
from schemas.records import JobMeta
from tests.factories import route_decision
from tests.integration.helpers import register
from tests.integration.test_store import result
from workers.errors import InvalidInput
from workers.store.integrity import Verdict, new_secret, request_id, sign
from workers.store.jobstore import JOBS_INDEX, Store, done_key, ids_key, meta_key
from workers.submit.jobs import LEASE_EXPIRED, summary

pytestmark = pytest.mark.integration


def prompt(job: str, i: int, text: str = "What is 2 + 2?") -> PromptMessage:
    body = ChatBody.model_validate({"messages": [{"role": "user", "content": text}]})
    cid = str(i)
    return PromptMessage(
        request_id=request_id(job, cid), job_id=job, custom_id=cid, line=i, body=body, submitted_at=time.time()
    )


async def a_job(store: Store, job: str, n: int = 3, start: bool = True) -> tuple[JobMeta, bytes, list[PromptMessage]]:
    meta = JobMeta(job_id=job, total=n, source="t", submitted_at=time.time())
    prompts = [prompt(job, i) for i in range(1, n + 1)]
    if start:
        secret = await register(store, meta, [p.request_id for p in prompts])
    else:
        secret = new_secret()
        await store.register_job(meta, [p.request_id for p in prompts], secret)
    return meta, secret, [sign(p, secret) for p in prompts]


def escalation() -> AttemptSummary:
    return AttemptSummary(route=route_decision("direct"), model="m", confidence=0.1, threshold=0.5, completion_tokens=7)


async def test_each_verdict(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    _, secret, (p1, p2, _) = await a_job(store, job)
    assert await store.admit(p1) is Verdict.OK
    assert await store.write_result(result(job, 1, "direct"))
    assert await store.admit(p1) is Verdict.DONE  # a redelivery
    assert await store.admit(p2) is Verdict.OK

    assert await store.admit(p2.model_copy(update={"mac": None})) is Verdict.UNSIGNED
    assert await store.admit(p2.model_copy(update={"request_id": p1.request_id})) is Verdict.BAD_REQUEST_ID
    new_id = p2.model_copy(update={"custom_id": "99", "request_id": request_id(job, "99")})
    assert await store.admit(new_id) is Verdict.UNREGISTERED  # a new custom id under the job
    assert await store.admit(sign(new_id, secret)) is Verdict.UNREGISTERED  # even signed with the secret
    altered = p2.model_copy(update={"body": ChatBody.model_validate({"messages": [{"role": "user", "content": "x"}]})})
    assert await store.admit(altered) is Verdict.BAD_MAC  # a registered id, a forged body
    assert await store.admit(altered.model_copy(update={"line": 7})) is Verdict.BAD_MAC
    assert await store.admit(p1.model_copy(update={"body": altered.body})) is Verdict.BAD_MAC  # even when done
    other = f"job-none-{unique}"
    ghost = p2.model_copy(update={"job_id": other, "request_id": request_id(other, p2.custom_id)})
    assert await store.admit(sign(ghost, secret)) is Verdict.UNKNOWN_JOB
    assert not await redis.exists(meta_key(other), ids_key(other), done_key(other))

    failed = f"job-failed-{unique}"
    _, _, (f1, *_) = await a_job(store, failed, start=False)
    assert await store.fail_job(failed, "broker gone")
    assert await store.admit(f1) is Verdict.FAILED_JOB


async def test_the_secret_is_fetched_once_per_job(redis: Redis, unique: str) -> None:
    job = f"job-{unique}"
    cached = Store(redis, autopipeline=True)
    _, _, (p1, p2, p3) = await a_job(cached, job)
    assert await cached.admit(p1) is Verdict.OK
    await redis.hdel(meta_key(job), "secret")  # from now on only a store that kept it can check a MAC
    assert [await cached.admit(p) for p in (p2, p3)] == [Verdict.OK, Verdict.OK]
    assert await Store(redis).admit(p2) is Verdict.BAD_MAC


async def test_unregistered_and_failed_job_writes_change_nothing(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    await a_job(store, job)  # ids 1..3
    assert not await store.write_result(result(job, 4, "direct"))
    assert not await store.write_escalation(job, f"{job}/4", escalation())
    assert not await store.write_result(result(f"job-none-{unique}", 1, "direct"))
    nothing = await store.totals(f"job-none-{unique}")
    assert nothing.completed == nothing.failed == 0 and nothing.routes["direct"].requests == 0
    assert await store.totals(job) == nothing
    assert [r async for r in store.results(job)] == []
    assert await redis.exists(done_key(job)) == 0

    failed = f"job-failed-{unique}"
    await a_job(store, failed, start=False)
    assert await store.write_result(result(failed, 1, "direct"))  # counts while submitting
    assert await store.write_escalation(failed, f"{failed}/2", escalation())
    assert (await store.totals(failed)).completed == 1
    assert await store.fail_job(failed, "broker gone after 2 of 3")
    # everything it counted is gone, and nothing counts any more
    assert await store.totals(failed) == nothing
    assert [r async for r in store.results(failed)] == []
    assert [k async for k in redis.scan_iter(match=f"tr:{{{failed}}}:*")] == [meta_key(failed).encode()]
    assert not await store.write_result(result(failed, 2, "direct"))
    assert not await store.write_escalation(failed, f"{failed}/3", escalation())
    assert (await store.totals(failed)).completed == 0
    meta = await store.job_meta(failed)
    assert meta is not None and (meta.state, meta.failed_reason) == ("failed", "broker gone after 2 of 3")


async def test_a_job_goes_submitting_running_done(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    meta, _, prompts = await a_job(store, job, start=False)
    got = await store.job_meta(job)
    assert got is not None and (got.state, got.total, got.submitted_at) == ("submitting", 3, meta.submitted_at)
    assert job in await store.recent_jobs() and await redis.scard(ids_key(job)) == 3  # type: ignore[misc]
    with pytest.raises(InvalidInput, match="already exists"):
        await store.register_job(meta, ["x"], new_secret())
    assert await store.admit(prompts[0]) is Verdict.OK  # the first registration (and secret) stand
    assert await store.renew_lease(job)
    assert await store.write_result(result(job, 1, "direct"))  # a worker may be faster than the acks
    assert await store.start_job(job) == "running"
    assert not await store.renew_lease(job) and not await store.fail_job(job, "late")
    assert await store.write_result(result(job, 2, "direct"))
    assert (await store.job_meta(job)).state == "running"  # type: ignore[union-attr]
    assert await store.write_result(result(job, 3, "reasoning", "failed"))
    assert (await store.job_meta(job)).state == "done"  # type: ignore[union-attr]
    s = await summary(store, meta)
    assert (s["state"], s["completed"], s["failed"], s["pending"], s["failed_reason"]) == ("done", 2, 1, 0, None)

    quick = f"job-quick-{unique}"
    await a_job(store, quick, n=1, start=False)
    assert await store.write_result(result(quick, 1, "direct"))
    assert await store.start_job(quick) == "done"  # every result was in before the last ack
    assert await store.start_job(f"job-none-{unique}") is None


async def test_a_vanished_submitter_is_failed_once_its_lease_expires(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job, held = f"job-{unique}", f"job-held-{unique}"
    meta = JobMeta(job_id=job, total=2, source="t", submitted_at=time.time())
    await store.register_job(meta, [f"{job}/1", f"{job}/2"], new_secret(), lease_s=-1)
    await store.register_job(meta.model_copy(update={"job_id": held}), [f"{held}/1"], new_secret())
    assert await store.write_result(result(job, 1, "direct"))
    s = await summary(store, meta.model_copy(update={"job_id": held}))
    assert (s["state"], s["pending"]) == ("submitting", 2)  # its lease still runs
    s = await summary(store, meta)
    assert (s["state"], s["failed_reason"], s["completed"], s["pending"]) == ("failed", LEASE_EXPIRED, 0, 0)
    assert not await store.renew_lease(job)


async def test_request_ids_cost_about_55_bytes_each(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique[:10]}ab"  # as new_job_id makes them: job-<12 hex>
    ids = [request_id(job, f"mmlu-pro-{10000 + i}") for i in range(10_000)]
    await store.register_job(
        JobMeta(job_id=job, total=len(ids), source="t", submitted_at=time.time()), ids, new_secret()
    )
    assert await redis.scard(ids_key(job)) == 10_000 and len(ids[0]) == 31  # type: ignore[misc]
    per_id = await redis.memory_usage(ids_key(job), samples=0) / len(ids)
    assert 31 < per_id < 80, per_id  # measured 54.8 on Valkey 9.1 (the module doc of workers.store.jobstore)
    assert await redis.zscore(JOBS_INDEX, job) is not None
