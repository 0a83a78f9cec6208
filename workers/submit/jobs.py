"""Client side of a job: submit prompts, wait for them, summarise, export results."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.messages import PromptPlan
from schemas.records import TERMINAL_STATES, JobMeta, JobPlan, JobTotals
from workers.errors import EXIT_UNREACHABLE, JobTimeout, TransientError, Unreachable
from workers.store.client import redis_address
from workers.store.integrity import new_secret
from workers.store.jobstore import LEASE_S, ROUTES, TOKEN_KINDS, Store
from workers.submit.batchfile import InputRequest
from workers.submit.encode import encode_prompts, message_limit
from workers.submit.savings import NO_EXPLORATION, NO_PAIRS
from workers.submit.savings import report as savings_report

log = logging.getLogger(__name__)
ProgressFn = Callable[[int, int], None]

LEASE_EXPIRED = "the submitter stopped before every prompt was published (its lease expired)"
STOPPED_STATES = ("stopping", "cancelled", "expired")  # a cancel or an expiry happened
MAX_PENDING = 2000  # prompts sent and not yet acknowledged, at most (memory flat in the job's size)


class SubmitFailed(TransientError):
    """Publishing a job's prompts failed after it began: the job is ``failed`` in Redis with the reason,
    nothing it published counts, and its id is in the message (resubmitting makes a new job)."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} failed: {reason}")
        self.job_id = job_id
        self.reason = reason


class SubmitUnreachable(SubmitFailed):
    """SubmitFailed because the broker or Redis went away midway (exit 3, as for ``Unreachable``)."""

    exit_code = EXIT_UNREACHABLE


CONNECTION_ERRORS = (KafkaConnectionError, KafkaTimeoutError, RedisConnectionError, RedisTimeoutError)


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


async def submit(
    producer: AIOKafkaProducer,
    store: Store,
    topic: str,
    requests: Sequence[InputRequest],
    source: str,
    job_id: str | None = None,
    max_message_bytes: int | None = None,
    plan: tuple[JobPlan | None, Sequence[PromptPlan | None]] | None = None,
) -> JobMeta:
    """Encode and check every prompt, register the job (its total, request ids and secret), then publish.

    All or nothing: a line that cannot be published raises BadInput before anything is recorded; a failure
    once publishing began makes the job ``failed`` in Redis (nothing of it counts) and raises SubmitFailed,
    which names the job. Returns once the broker acknowledged every prompt, with the job ``running`` (or
    ``done``); a job cancelled (or expired) meanwhile is returned at once in its state (``stopping``,
    ``cancelled``, ``expired``): what was not published is counted stopped, nothing failed.
    ``max_message_bytes``: the broker's record limit if smaller than the producer's. ``plan``: the
    job's planning pass (``workers.router.plan.plan_job``): its JobPlan goes in the job's meta, each PromptPlan
    on its prompt (signed with it); ``(None, [None, ...])`` or None: a job without a plan.
    """
    job_id = job_id or new_job_id()
    now = time.time()
    secret = new_secret()
    limit = message_limit(producer) if max_message_bytes is None else min(message_limit(producer), max_message_bytes)
    job_plan, plans = plan if plan is not None else (None, None)
    encoded = encode_prompts(job_id, requests, now, secret, limit, plans)
    meta = JobMeta(job_id=job_id, total=len(requests), source=source, submitted_at=now, plan=job_plan)
    return await submit_encoded(producer, store, topic, meta, secret, [key.decode() for key, _ in encoded], encoded)


async def submit_encoded(
    producer: AIOKafkaProducer,
    store: Store,
    topic: str,
    meta: JobMeta,
    secret: bytes,
    request_ids: Iterable[str],
    encoded: Iterable[tuple[bytes, bytes]],
) -> JobMeta:
    """``submit`` from here on: register the job (``meta.total`` requests, ``request_ids`` in input order, read
    in chunks), then publish ``encoded`` (each prompt's signed message, same order, made with ``secret``; it
    may be a generator, consumed as it is sent: ``workers.submit.stream``) and start the job."""
    job_id = meta.job_id
    await store.register_job(meta, request_ids, secret)  # before the first publish
    published = False
    try:
        stopped = await _publish(producer, store, topic, job_id, encoded, meta.total)
        if stopped is not None:
            return meta.model_copy(update={"state": stopped})
        published = True
        state = await store.start_job(job_id)
    except SubmitFailed:
        raise
    except BaseException as exc:  # Ctrl-C too: the job must not stay half-submitted
        stage = "recording that every prompt was published" if published else "publishing"
        reason = f"{stage} failed: {type(exc).__name__}: {exc}"[:500]
        await _mark_failed(store, job_id, reason)
        if isinstance(exc, Exception):
            kind = SubmitUnreachable if isinstance(exc, CONNECTION_ERRORS) else SubmitFailed
            raise kind(job_id, reason) from exc
        raise
    if state not in ("running", "done", *STOPPED_STATES):
        raise SubmitFailed(job_id, await _failed_reason(store, job_id))
    return meta.model_copy(update={"state": state})


class _Stopped(Exception):
    """The job was cancelled or expired while it was being published (its state)."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


async def _publish(
    producer: AIOKafkaProducer,
    store: Store,
    topic: str,
    job_id: str,
    encoded: Iterable[tuple[bytes, bytes]],
    total: int,
) -> str | None:
    """Send every prompt and wait for every ack (at most ``MAX_PENDING`` unacknowledged), renewing the job's
    lease meanwhile. The job's state when it was stopped (cancelled, expired) meanwhile: publishing ends there,
    quietly (the prompts not published are counted stopped by the stop); None once every prompt was
    acknowledged."""
    every = LEASE_S / 4
    renew_at = time.monotonic() + every

    async def renew() -> None:
        nonlocal renew_at
        if time.monotonic() >= renew_at:
            renew_at = time.monotonic() + every
            if not await store.renew_lease(job_id):
                meta = await store.job_meta(job_id)
                if meta is not None and meta.state in STOPPED_STATES:
                    raise _Stopped(meta.state)
                raise SubmitFailed(job_id, _reason_of(meta))

    pending: set[asyncio.Future[Any]] = set()
    sent = acked = 0

    async def settle(when: str) -> None:
        nonlocal pending, acked
        done, pending = await asyncio.wait(pending, timeout=every, return_when=when)
        for fut in done:
            fut.result()  # the first broker error ends the submit
        acked += len(done)
        await renew()

    try:
        for key, value in encoded:
            fut = await producer.send(topic, value, key=key)
            fut.add_done_callback(_retrieve)
            pending.add(fut)
            sent += 1
            await renew()
            while len(pending) >= MAX_PENDING:
                await settle(asyncio.FIRST_COMPLETED)
        while pending:
            await settle(asyncio.FIRST_EXCEPTION)
    except _Stopped as stopped:
        log.info("job %s %s while being published: %d of %d prompts sent", job_id, stopped.state, sent, total)
        return stopped.state
    except BaseException:
        acked += sum(1 for f in pending if f.done() and not f.cancelled() and f.exception() is None)
        log.warning("job %s: publishing stopped after %d of %d prompts were acknowledged", job_id, acked, total)
        raise
    return None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a failed ack's error as seen (the first one is raised; the others would warn at exit)."""
    if not fut.cancelled():
        fut.exception()


async def _mark_failed(store: Store, job_id: str, reason: str) -> None:
    try:
        await store.fail_job(job_id, reason)
    except Exception as exc:  # Redis away too: the lease runs out and the first status fails the job
        log.warning("job %s: could not record the failure (%s); it fails when its lease expires", job_id, exc)


async def _failed_reason(store: Store, job_id: str) -> str:
    return _reason_of(await store.job_meta(job_id))


def _reason_of(meta: JobMeta | None) -> str:
    return (meta.failed_reason if meta is not None else None) or "the job was failed while it was being published"


async def wait_for_job(
    store: Store,
    meta: JobMeta,
    progress: ProgressFn | None = None,
    check: Callable[[], None] | None = None,
    poll_s: float = 0.2,
    timeout_s: float | None = None,
) -> JobTotals:
    """Poll the job's counters until completed + failed reaches the total and, for a job with an exploration
    sample, every exploration answer is in too (what makes the job ``done`` in Redis), or until the job is
    terminal otherwise (cancelled, expired, failed: from elsewhere); ``check`` may raise. A ``stopping`` job is
    not done: it is waited for, and settled here once its settle deadline passed.

    Raises JobTimeout after ``timeout_s``. Redis being briefly away (a restart, a failover) only delays the
    answer: the client retries with backoff (``workers.store.jobstore.redis_client``); once it gives up,
    Unreachable names Redis's address and the job's progress.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done = 0
    sample = explore_total(meta)
    while True:
        try:
            totals = await store.totals(meta.job_id)
            done = totals.completed + totals.failed
            if progress:
                progress(done, meta.total)
            if done >= meta.total and explored(totals) >= sample:
                return totals
            if await current_state(store, meta.job_id) in TERMINAL_STATES:
                return await store.totals(meta.job_id)  # read again: the last write may have ended it
        except (RedisConnectionError, RedisTimeoutError) as exc:
            detail = f"gave up waiting for job {meta.job_id} ({done}/{meta.total} done): {exc}"
            raise Unreachable("Redis", redis_address(store.redis), detail) from exc
        if check:
            check()
        if deadline is not None and time.monotonic() > deadline:
            raise JobTimeout(meta.job_id, done, meta.total, timeout_s or 0.0)
        await asyncio.sleep(poll_s)


async def current_state(store: Store, job_id: str) -> str | None:
    """The job's state in Redis (None: no such job); a ``stopping`` job past its settle deadline is settled."""
    meta = await store.job_meta(job_id)
    if meta is None:
        return None
    if meta.state == "stopping":
        return await store.settle_overdue(job_id) or meta.state
    return meta.state


def explore_total(meta: JobMeta) -> int:
    """The number of exploration answers the job waits for (its plan's sample), 0 without one."""
    return meta.plan.explore_total if meta.plan is not None else 0


def explored(totals: JobTotals) -> int:
    """Exploration answers recorded (completed or failed), over both routes."""
    return sum(t.requests for t in totals.exploration.values())


def exploration_summary(meta: JobMeta, totals: JobTotals) -> dict[str, Any]:
    """``exploration`` of the summary: the sample's size, its answers still pending, and per route the shadow
    answers (requests, completed, failed) and their tokens, none of them in ``tokens``/``tokens_by_route``."""
    sample = explore_total(meta)
    by_route = {
        r: {"requests": t.requests, "completed": t.completed, "failed": t.failed}
        | {k.removesuffix("_tokens"): getattr(t, k) for k in TOKEN_KINDS}
        for r, t in sorted(totals.exploration.items())
    }
    return {"total": sample, "pending": max(sample - explored(totals), 0), "routes": by_route}


async def summary(store: Store, meta: JobMeta, wall_s: float | None = None) -> dict[str, Any]:
    """The job's state, progress, tokens and latency. A job still ``validating`` or ``submitting`` after its
    submitter's lease expired is failed here (so no job shows pending forever), and a ``stopping`` job past its
    settle deadline is settled (its answers still in flight counted stopped). ``pending``: neither answered
    nor stopped (in flight included)."""
    current = await store.job_meta(meta.job_id) or meta
    expired_lease = current.state in ("validating", "submitting")
    if expired_lease and await store.fail_job(meta.job_id, LEASE_EXPIRED, only_if_lease_expired=True):
        current = await store.job_meta(meta.job_id) or current
    elif current.state == "stopping" and await store.settle_overdue(meta.job_id) is not None:
        current = await store.job_meta(meta.job_id) or current
    meta = current
    totals = await store.totals(meta.job_id)
    lat = await store.latency_percentiles(meta.job_id)
    answered = totals.completed + totals.failed
    routes = {r: totals.routes[r].requests for r in ROUTES}
    esc = totals.escalations
    escalation_tokens = {k.removesuffix("_tokens"): getattr(esc, k) for k in TOKEN_KINDS}
    tokens = {
        k.removesuffix("_tokens"): sum(getattr(totals.routes[r], k) for r in ROUTES) + getattr(esc, k)
        for k in TOKEN_KINDS
    }
    by_route = {
        r: {k.removesuffix("_tokens"): getattr(totals.routes[r], k) for k in TOKEN_KINDS}
        | {"completed": totals.routes[r].completed, "failed": totals.routes[r].failed}
        for r in ROUTES
    }
    return (
        {
            "job_id": meta.job_id,
            "source": meta.source,
            "total": meta.total,
            "completed": totals.completed,
            "failed": totals.failed,
            "stopped": totals.stopped,
            "in_flight": totals.in_flight,
            "pending": 0 if current.state == "failed" else max(meta.total - answered - totals.stopped, 0),
            "state": current.state,
            "stop": current.stop,
            "failed_reason": current.failed_reason,
            "routes": routes,
            "tokens": tokens,
            "tokens_by_route": by_route,
            "escalations": esc.requests,
            "fallback": totals.fallback,
            "escalation_tokens": escalation_tokens,
            "exploration": exploration_summary(current, totals),
            "latency_s": {k: round(v, 4) for k, v in lat.items()},
            "wall_s": round(wall_s if wall_s is not None else time.time() - meta.submitted_at, 3),
        }
        | ({"plan": plan_summary(current.plan, totals, meta.total)} if current.plan is not None else {})
        | await savings_fields(store, current, totals)
    )


async def savings_fields(store: Store, meta: JobMeta, totals: JobTotals) -> dict[str, Any]:
    """``savings`` (``workers.submit.savings``) from the job's exploration sample, read only when it has one;
    else None with a one-line ``savings_hint``."""
    planned = meta.plan is not None and meta.plan.explore_total > 0
    if not planned and not any(t.requests for t in totals.exploration.values()):
        return {"savings": None, "savings_hint": NO_EXPLORATION}
    results, explorations = await store.explored_pairs(meta.job_id)
    savings = await asyncio.to_thread(savings_report, totals, results, explorations)  # the bootstrap: off the loop
    return {"savings": savings, "savings_hint": None if savings is not None else NO_PAIRS}


def plan_summary(plan: JobPlan, totals: JobTotals, total: int) -> dict[str, Any]:
    """The job's plan against what was routed: planned and realised reasoning (requests, share, tokens)."""
    reasoning = totals.routes["reasoning"]  # escalated direct answers count here too (their second attempt)
    routed = reasoning.requests
    return {
        "budget": plan.budget,
        "policy_version": plan.policy_version,
        "threshold": plan.threshold,
        "planned": {
            "reasoning": plan.planned_reasoning,
            "share": round(plan.planned_reasoning / total, 6) if total else 0.0,
            "expected_reasoning_tokens": plan.expected_reasoning_tokens,
        },
        "realised": {
            "reasoning": routed,
            "share": round(routed / total, 6) if total else 0.0,
            "reasoning_tokens": reasoning.reasoning_tokens,
        },
        "explore": plan.explore,
        "explore_seed": plan.explore_seed,
        "explore_total": plan.explore_total,
    }
