"""A job's lifecycle against the real Redis: API batches (validating), cancel and expiry with answers in flight,
settling, finalizing, and the owners' batch pages. Every request ends counted once: answered or stopped."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from schemas.batch import ChatBody
from schemas.messages import PromptMessage
from schemas.records import BatchInfo, JobMeta, LineError
from tests.integration.test_store import result
from tests.integration.test_store_integrity import a_job, escalation, prompt
from workers.errors import NotFound
from workers.store.integrity import Verdict, new_secret, sign
from workers.store.jobstore import Store, done_key, ids_key
from workers.store.keys import ACTIVE_BATCHES, inflight_key, order_key, stopped_key
from workers.submit.jobs import summary

pytestmark = pytest.mark.integration


def batch_meta(job: str, owner: str = "alice", expires_at: float | None = None, at: float | None = None) -> JobMeta:
    info = BatchInfo(input_file_id="file-" + "0" * 24)
    now = time.time() if at is None else at
    return JobMeta(
        job_id=job, total=0, source="in.jsonl", submitted_at=now, owner=owner, batch=info, expires_at=expires_at
    )


async def a_batch(
    store: Store, job: str, n: int = 4, expires_at: float | None = None, start: bool = True
) -> tuple[JobMeta, list[PromptMessage]]:
    """An API batch through validating -> submitting (-> running): created, ids registered, begun."""
    meta = batch_meta(job, expires_at=expires_at)
    await store.create_batch(meta, lease_s=60)
    prompts = [prompt(job, i) for i in range(1, n + 1)]
    assert await store.register_ids(job, [p.request_id for p in prompts])
    secret = new_secret()
    assert await store.begin_submit(job, meta.model_copy(update={"total": n}), secret, lease_s=60)
    if start:
        assert await store.start_job(job) == "running"
    return meta, [sign(p, secret) for p in prompts]


async def sets(redis: Redis, job: str) -> tuple[set[bytes], set[bytes], set[bytes]]:
    """The job's done, in-flight and stopped request ids."""
    got = [await redis.smembers(k(job)) for k in (done_key, inflight_key, stopped_key)]  # type: ignore[misc]
    return got[0], got[1], got[2]


async def assert_settled(store: Store, job: str, state: str, completed: int, failed: int, stopped: int) -> None:
    """Terminal, and every request counted once: answered or stopped, never both, nothing in flight."""
    meta = await store.job_meta(job)
    totals = await store.totals(job)
    assert meta is not None and meta.state == state and meta.settled_at is not None
    assert (totals.completed, totals.failed, totals.stopped, totals.in_flight) == (completed, failed, stopped, 0)
    assert totals.completed + totals.failed + totals.stopped == meta.total
    done, inflight, stopped_ids = await sets(store.redis, job)
    assert not done & stopped_ids and not inflight
    assert done | stopped_ids == await store.redis.smembers(ids_key(job))  # type: ignore[misc]


async def test_a_batch_cancelled_while_validating_ends_at_once_with_nothing(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    meta = batch_meta(job, expires_at=time.time() + 3600)
    await store.create_batch(meta, lease_s=60)
    got = await store.job_meta(job)
    assert got is not None and (got.state, got.owner, got.expires_at, got.batch) == (
        "validating",
        "alice",
        meta.expires_at,
        meta.batch,
    )
    assert await store.renew_lease(job)  # the intake's lease, while validating
    assert await store.register_ids(job, [f"{job}/1", f"{job}/2"])
    assert await store.stop_job(job, "cancelled", settle_s=60) == "cancelled"
    got = await store.job_meta(job)
    assert got is not None and (got.state, got.stop, got.total) == ("cancelled", "cancelled", 0)
    assert got.stop_at is not None and got.settled_at is not None and got.started_at is None
    assert await redis.exists(ids_key(job), order_key(job)) == 0
    # the intake finds out at its next step, and changes nothing
    assert not await store.register_ids(job, [f"{job}/3"])
    assert not await store.begin_submit(job, meta.model_copy(update={"total": 3}), new_secret(), 60)
    assert not await store.renew_lease(job)
    assert await store.stop_job(job, "cancelled", settle_s=60) == "cancelled"  # again: unchanged
    assert job in await store.active_batches()  # until its (empty) files are done
    with pytest.raises(NotFound):
        await store.stop_job(f"batch_none_{unique}", "cancelled", settle_s=60)


async def test_cancel_while_submitting_keeps_the_answer_in_flight_and_stops_the_rest(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    _, _, (p1, p2, p3, *_) = await a_job(store, job, n=5, start=False)
    assert await store.admit(p1) is Verdict.OK  # in flight
    assert await store.write_result(result(job, 2, "direct"))
    assert await store.stop_job(job, "cancelled", settle_s=60) == "stopping"
    t = await store.totals(job)
    assert (t.completed, t.stopped, t.in_flight) == (1, 3, 1)
    assert not await store.renew_lease(job)  # the submitter stops publishing
    assert await store.start_job(job) == "stopping"
    # what is published after the cancel is not started, and already counted stopped
    assert await store.admit(p3) is Verdict.STOPPED and not await store.skip(p3)
    assert await store.admit(p2) is Verdict.DONE
    assert await store.write_result(result(job, 1, "reasoning"))  # the answer in flight counts, the job ends
    await assert_settled(store, job, "cancelled", completed=2, failed=0, stopped=3)
    meta = await store.job_meta(job)
    assert meta is not None and meta.started_at is not None and meta.stop_at is not None
    assert meta.started_at <= meta.stop_at <= meta.settled_at  # type: ignore[operator]


async def test_cancel_while_running_counts_each_request_once(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    _, _, (p1, p2, *_) = await a_job(store, job, n=6)
    assert await store.write_result(result(job, 3, "direct"))
    assert [await store.admit(p) for p in (p1, p2)] == [Verdict.OK, Verdict.OK]
    assert await store.stop_job(job, "cancelled", settle_s=60) == "stopping"
    assert await store.stop_job(job, "cancelled", settle_s=60) == "stopping"  # idempotent
    done, inflight, stopped = await sets(redis, job)
    assert (len(done), inflight, len(stopped)) == (1, {p1.request_id.encode(), p2.request_id.encode()}, 3)
    # a redelivered copy of p1 (its first worker still answering) is not started: counted stopped now ...
    assert await store.admit(p1) is Verdict.STOPPED
    assert await store.skip(p1) and not await store.skip(p1)
    assert (await store.totals(job)).stopped == 4
    # ... and when the first worker's answer comes after all, the answer wins: counted once, as completed
    assert await store.write_result(result(job, 1, "direct"))
    assert not await store.write_result(result(job, 1, "direct"))  # a redelivered write
    t = await store.totals(job)
    assert (t.completed, t.stopped, t.in_flight) == (2, 3, 1)
    assert await store.write_result(result(job, 2, "reasoning", "failed"))
    await assert_settled(store, job, "cancelled", completed=2, failed=1, stopped=3)
    # the job ended: late writes are refused (-3) and change nothing
    before = await store.totals(job)
    assert not await store.write_result(result(job, 4, "direct"))
    assert not await store.write_escalation(job, f"{job}/5", escalation())
    assert await store.totals(job) == before
    assert await store.admit(p2) is Verdict.DONE and not await store.skip(p2)
    assert await store.stop_job(job, "expired", settle_s=60) == "cancelled"  # terminal: unchanged


async def test_a_stopped_verdict_with_a_bad_mac_is_bad_mac(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    _, _, (p1, _, p3) = await a_job(store, job)
    assert await store.stop_job(job, "cancelled", settle_s=60) == "cancelled"  # nothing in flight
    forged = p3.model_copy(update={"body": ChatBody.model_validate({"messages": [{"role": "user", "content": "x"}]})})
    assert await store.admit(forged) is Verdict.BAD_MAC
    assert await Store(redis).admit(p1.model_copy(update={"mac": "0" * 64})) is Verdict.BAD_MAC
    assert await store.admit(p3) is Verdict.STOPPED
    await assert_settled(store, job, "cancelled", completed=0, failed=0, stopped=3)


async def test_an_admit_after_expires_at_expires_the_batch(redis: Redis, unique: str) -> None:
    store = Store(redis, settle_s=60)
    job = f"batch_{unique}"
    _, (p1, _, p3, p4) = await a_batch(store, job, n=4, expires_at=time.time() + 3600)
    assert await store.stop_job(job, "expired", settle_s=60, only_if_due=True) == "running"  # not due
    assert await store.admit(p1) is Verdict.OK
    assert await store.write_result(result(job, 2, "direct"))
    await redis.hset(f"tr:{{{job}}}:meta", "expires_at", repr(time.time() - 1))  # the window ends
    assert await store.admit(p3) is Verdict.STOPPED  # this admit expires it
    got = await store.job_meta(job)
    assert got is not None and (got.state, got.stop) == ("stopping", "expired")
    assert await store.admit(p4) is Verdict.STOPPED and not await store.skip(p4)
    assert await store.write_result(result(job, 1, "direct"))
    await assert_settled(store, job, "expired", completed=2, failed=0, stopped=2)


async def test_a_batch_past_its_window_expires_at_its_first_admit_with_nothing_run(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    _, (p1, *_) = await a_batch(store, job, n=3, expires_at=time.time() - 1)
    assert await store.admit(p1) is Verdict.STOPPED
    await assert_settled(store, job, "expired", completed=0, failed=0, stopped=3)
    assert (await store.job_meta(job)).stop == "expired"  # type: ignore[union-attr]
    # the sweeper's call finds it terminal
    assert await store.stop_job(job, "expired", settle_s=60, only_if_due=True) == "expired"


async def test_the_sweepers_expiry_of_a_running_batch(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    await a_batch(store, job, n=3, expires_at=time.time() - 1)
    assert await store.stop_job(job, "expired", settle_s=60, only_if_due=True) == "expired"
    await assert_settled(store, job, "expired", completed=0, failed=0, stopped=3)


async def test_a_shadow_of_a_stopped_job_is_stopped(redis: Redis, unique: str) -> None:
    from schemas.messages import PromptPlan

    store = Store(redis)
    job = f"job-{unique}"
    meta = JobMeta(job_id=job, total=1, source="t", submitted_at=time.time())
    secret = new_secret()
    p = prompt(job, 1).model_copy(update={"plan": PromptPlan(explore=True)})
    await store.register_job(meta, [p.request_id], secret)
    assert await store.start_job(job) == "running"
    signed = sign(p, secret)
    assert await store.admit(signed, shadow=True) is Verdict.OK
    assert (await store.totals(job)).in_flight == 0  # a shadow is never in flight: the routed request is
    assert await store.stop_job(job, "cancelled", settle_s=60) == "cancelled"
    assert await store.admit(signed, shadow=True) is Verdict.STOPPED


async def test_settle_overdue_gives_up_on_answers_in_flight(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    _, _, (p1, p2, _) = await a_job(store, job)
    assert [await store.admit(p) for p in (p1, p2)] == [Verdict.OK, Verdict.OK]
    assert await store.stop_job(job, "cancelled", settle_s=300) == "stopping"
    assert await store.settle_overdue(job) is None  # not due
    await redis.hset(f"tr:{{{job}}}:meta", "settle_by", repr(time.time() - 1))
    s = await summary(store, JobMeta(job_id=job, total=3, source="t", submitted_at=1.0))  # status settles it
    assert (s["state"], s["stopped"], s["in_flight"], s["pending"], s["completed"]) == ("cancelled", 3, 0, 0, 0)
    await assert_settled(store, job, "cancelled", completed=0, failed=0, stopped=3)
    assert await store.settle_overdue(job) is None  # settled once
    assert not await store.write_result(result(job, 1, "direct"))  # its late answer is refused
    assert (await store.totals(job)).completed == 0

    quick = f"job-quick-{unique}"
    _, _, (q1, *_) = await a_job(store, quick)
    assert await store.admit(q1) is Verdict.OK
    assert await store.stop_job(quick, "cancelled", settle_s=0)  # due at once == "stopping"
    s = await summary(store, JobMeta(job_id=quick, total=3, source="t", submitted_at=1.0))
    assert (s["state"], s["stop"], s["stopped"]) == ("cancelled", "cancelled", 3)


async def test_summary_of_a_stopping_job(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"job-{unique}"
    meta, _, (p1, *_) = await a_job(store, job, n=5)
    assert await store.write_result(result(job, 2, "direct"))
    assert await store.admit(p1) is Verdict.OK
    assert await store.stop_job(job, "cancelled", settle_s=300) == "stopping"
    s = await summary(store, meta)
    assert (s["state"], s["completed"], s["stopped"], s["in_flight"], s["pending"]) == ("stopping", 1, 3, 1, 1)


async def test_validation_failure_keeps_the_line_errors(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    await store.create_batch(batch_meta(job), lease_s=60)
    assert await store.register_ids(job, [f"{job}/a"])
    errors = [
        LineError(code="invalid_json_line", message="not JSON", line=2),
        LineError(code="empty_file", message="x"),
    ]
    assert await store.fail_validation(job, "2 invalid lines", errors)
    got = await store.job_meta(job)
    assert got is not None and (got.state, got.failed_reason, got.errors) == ("failed", "2 invalid lines", errors)
    assert got.failed_at is not None
    assert await redis.exists(ids_key(job), order_key(job)) == 0
    assert not await store.fail_validation(job, "again", errors)  # not validating any more
    assert await store.mark_finalized(job, None, None)  # the sweeper retires it: no files
    assert job not in await store.active_batches()
    got = await store.job_meta(job)
    assert got is not None and got.finalized_at is not None and got.output_file_id is None


async def test_a_validating_batch_whose_lease_expired_is_failed(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    await store.create_batch(batch_meta(job), lease_s=0)  # expired at once
    assert await store.fail_job(job, "serve stopped", only_if_lease_expired=True)
    assert (await store.job_meta(job)).state == "failed"  # type: ignore[union-attr]
    held = f"batch_held_{unique}"
    await store.create_batch(batch_meta(held), lease_s=60)
    assert not await store.fail_job(held, "serve stopped", only_if_lease_expired=True)
    assert not await store.fail_validation(f"batch_none_{unique}", "x", [])


async def test_begin_submit_records_the_total_secret_and_order(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    await store.create_batch(batch_meta(job), lease_s=60)
    ids = [f"{job}/{i}" for i in range(2500)]
    for i in range(0, 2500, 1000):
        assert await store.register_ids(job, ids[i : i + 1000])
    assert await store.request_ids_in_order(job, 0, 3) == ids[:3]
    assert await store.request_ids_in_order(job, 999, 2) == ids[999:1001]
    assert await store.request_ids_in_order(job, 2499, 1000) == ids[2499:]
    assert await store.request_ids_in_order(job, 2500, 10) == []
    meta = await store.job_meta(job)
    assert meta is not None and meta.total == 0 and meta.started_at is None
    assert await store.begin_submit(job, meta.model_copy(update={"total": 2500}), new_secret(), 60)
    assert not await store.begin_submit(job, meta, new_secret(), 60)  # once
    got = await store.job_meta(job)
    assert got is not None and (got.state, got.total) == ("submitting", 2500) and got.started_at is not None
    assert await store.renew_lease(job)
    with pytest.raises(Exception, match="already exists"):
        await store.create_batch(batch_meta(job), lease_s=60)


async def test_finalize_lock_and_mark_once(redis: Redis, unique: str) -> None:
    store = Store(redis)
    job = f"batch_{unique}"
    await a_batch(store, job, n=1)
    assert not await store.mark_finalized(job, "file-out", None)  # running: not yet
    assert job in await store.active_batches()
    assert await store.write_result(result(job, 1, "direct"))
    got = await store.job_meta(job)
    assert got is not None and got.state == "done" and got.settled_at is not None
    assert await store.claim_finalize(job, ttl_s=30) and not await store.claim_finalize(job, ttl_s=30)
    assert await store.mark_finalized(job, "file-out", None)
    assert not await store.mark_finalized(job, "file-other", "file-err")  # once
    got = await store.job_meta(job)
    assert got is not None and (got.output_file_id, got.error_file_id) == ("file-out", None)
    assert got.finalized_at is not None and got.finalized_at >= got.settled_at  # type: ignore[operator]
    assert job not in await store.active_batches() and not await redis.sismember(ACTIVE_BATCHES, job)  # type: ignore[misc]


async def test_owner_batches_pages_newest_first(redis: Redis, unique: str) -> None:
    store = Store(redis)
    owner, other = f"alice-{unique}", f"bob-{unique}"
    jobs = [f"batch_{unique}_{i}" for i in range(5)]
    for i, job in enumerate(jobs):
        await store.create_batch(batch_meta(job, owner=owner, at=1000.0 + i), lease_s=60)
    await store.create_batch(batch_meta(f"batch_{unique}_b", owner=other, at=2000.0), lease_s=60)
    newest = jobs[::-1]
    assert await store.owner_batches(owner, None, 2) == (newest[:2], True)
    assert await store.owner_batches(owner, newest[1], 2) == (newest[2:4], True)
    assert await store.owner_batches(owner, newest[3], 2) == (newest[4:], False)
    assert await store.owner_batches(owner, newest[4], 2) == ([], False)
    assert await store.owner_batches(owner, None, 5) == (newest, False)
    assert await store.owner_batches(owner, "batch_unknown", 2) == ([], False)
    assert await store.owner_batches(owner, f"batch_{unique}_b", 2) == ([], False)  # another owner's
    assert await store.owner_batches(other, None, 10) == ([f"batch_{unique}_b"], False)
    assert await store.owner_batches(f"nobody-{unique}", None, 10) == ([], False)
    assert set(jobs) <= set(await store.active_batches())


async def test_only_a_prompt_with_a_good_mac_is_in_flight(redis: Redis, unique: str) -> None:
    job = f"job-{unique}"
    _, _, (p1, p2, p3) = await a_job(Store(redis), job)
    forged = p2.model_copy(update={"body": ChatBody.model_validate({"messages": [{"role": "user", "content": "x"}]})})
    fresh, cached = Store(redis), Store(redis, autopipeline=True)
    assert await fresh.admit(forged) is Verdict.BAD_MAC  # the secret not known before the call
    assert await cached.admit(p1) is Verdict.OK  # fetched the secret, then marked p1 in flight
    assert await cached.admit(forged) is Verdict.BAD_MAC  # the secret known: checked first
    t = await cached.totals(job)
    assert t.in_flight == 1 and await redis.smembers(inflight_key(job)) == {p1.request_id.encode()}  # type: ignore[misc]
    assert await cached.stop_job(job, "cancelled", settle_s=60) == "stopping"
    assert (await cached.totals(job)).stopped == 2  # the forged prompt held nothing up
    assert await cached.admit(p3) is Verdict.STOPPED and not await cached.skip(p3)
