"""A job's lifecycle in Redis (issue 15): register (CLI) or create and begin (API batches, ``validating`` first),
renew, start, fail, cancel and expire (``stop_job``), settle, finalize, and the owners' indexes of batches. The
base of ``workers.store.jobstore.Store``; the scripts are in ``workers.store.lua_lifecycle`` (``SKIP`` in
``workers.store.lua``, beside ``ADMIT`` which it answers).

Stop (cancel, or the end of the completion window). A validating batch ends at once (nothing was published). A
submitting or running job becomes ``stopping``: no request of it starts any more (``ADMIT`` answers
``stopped``, the worker calls ``skip``), every request neither answered nor in flight is counted stopped, the
answers in flight are kept and counted when they come; when the last is in the job is ``cancelled`` or
``expired``. An answer that never comes (its worker died and the job's messages are gone) is given up on at
``settle_by`` (``settle_overdue``, called by ``summary`` and the API's sweeper): then it counts stopped and its
late write is refused. A job expires when a worker admits one of its prompts after ``expires_at``, or when the
sweeper calls ``stop_job(..., only_if_due=True)``. Each request is counted once: answered (completed or failed)
or stopped, never both (``workers.store.lua``).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any, cast

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from schemas.messages import PromptMessage
from schemas.records import JobMeta, JobState, LineError, StopReason
from workers.errors import InvalidInput, NotFound
from workers.store.autopipe import AutoPipeline
from workers.store.client import RedisClient
from workers.store.keys import (
    ACTIVE_BATCHES,
    JOBS_INDEX,
    attempt_key,
    done_key,
    escalated_key,
    exploration_key,
    explored_key,
    finalize_lock_key,
    ids_key,
    inflight_key,
    latency_key,
    meta_key,
    order_key,
    owner_batches_key,
    result_key,
    stopped_key,
    totals_key,
)
from workers.store.lua import SKIP
from workers.store.lua_lifecycle import (
    BEGIN,
    CREATE,
    FAIL,
    MARK_FINALIZED,
    OWNER_PAGE,
    REGISTER,
    REGISTER_IDS,
    RENEW,
    SETTLE,
    START,
    STOP,
)

log = logging.getLogger(__name__)

LEASE_S = 60.0  # a validating or submitting job whose lease its intake or submitter did not renew is failed
SETTLE_S = 300.0  # after a stop: how long answers in flight are waited for (ApiSettings.settle_s)
CHUNK = 1000
STOP_REASONS: tuple[StopReason, ...] = ("cancelled", "expired")

# the meta hash's fields beside ``record``, overlaid on it by ``job_meta``
_TEXTS = ("state", "failed_reason", "owner", "stop", "output_file_id", "error_file_id")
_TIMES = ("expires_at", "started_at", "stop_at", "settled_at", "failed_at", "finalized_at")
_FIELDS = ("record", "total", "errors", *_TEXTS, *_TIMES)
_OVERLAID = ("stop", "started_at", "stop_at", "settled_at", "failed_at", "finalized_at")
_OVERLAID_TOO = ("output_file_id", "error_file_id", "errors", "failed_reason")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(meta: JobMeta, state: JobState) -> str:
    """The ``record`` field: the job as submitted, without what the scripts keep beside it."""
    return meta.model_copy(update={"state": state} | dict.fromkeys((*_OVERLAID, *_OVERLAID_TOO))).model_dump_json()


def _explore_total(meta: JobMeta) -> int:
    return meta.plan.explore_total if meta.plan is not None else 0


class Lifecycle:
    """The job-level calls of ``Store`` over one Redis pool. ``settle_s``: the settle deadline of an expiry that
    ``admit`` triggers (a cancel or the sweeper passes its own)."""

    def __init__(self, redis: RedisClient, autopipeline: bool = False, settle_s: float = SETTLE_S) -> None:
        self.redis = redis
        self.settle_s = settle_s
        self.pipeline = AutoPipeline(redis) if autopipeline else None
        script = redis.register_script
        self._register, self._renew, self._start, self._fail = (script(x) for x in (REGISTER, RENEW, START, FAIL))
        self._create, self._register_ids, self._begin = (script(x) for x in (CREATE, REGISTER_IDS, BEGIN))
        self._stop, self._skip, self._settle = (script(x) for x in (STOP, SKIP, SETTLE))
        self._finalized, self._owner_page = script(MARK_FINALIZED), script(OWNER_PAGE)

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        if self.pipeline is None:
            return await script(keys=keys, args=args)

        def queue(pipe: Pipeline | ClusterPipeline) -> None:
            if isinstance(pipe, Pipeline):
                pipe.scripts.add(script)  # type: ignore[arg-type]  # redis-py types it as the sync Script
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            else:  # a cluster pipeline refuses ``evalsha`` (its keys are routed like any command's) and loads
                # no scripts: see below
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

        try:
            return await self.pipeline.call(queue)
        except NoScriptError:
            # The script did not run: Redis restarted (empty script cache) after the pipeline checked its
            # scripts and the client's Retry replayed it there, or (a cluster) the master of this job's slot
            # does not have it yet. Called on its own, it is loaded (on every master of a cluster) and run.
            return await script(keys=keys, args=args)

    # --- CLI jobs ------------------------------------------------------------------------------------------
    async def register_job(
        self, meta: JobMeta, request_ids: Iterable[str], secret: bytes, lease_s: float = LEASE_S
    ) -> None:
        """Record a new job as ``submitting`` with its secret, then its request ids (input order, read ``CHUNK``
        at a time: a generator is never held whole); before any publish. InvalidInput if the job exists
        (nothing changes). If Redis fails after the first step, the job stays ``submitting`` until its lease
        expires, then is failed (nothing of it was published)."""
        job = meta.job_id
        args: list[str | int | float] = [_record(meta, "submitting"), meta.total, secret.hex(), lease_s]
        if not await self._register(keys=[meta_key(job)], args=[*args, _explore_total(meta)]):
            raise InvalidInput(f"job {job} already exists")
        ids = iter(request_ids)
        while chunk := list(islice(ids, CHUNK)):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(ids_key(job), *chunk)
                pipe.rpush(order_key(job), *chunk)
                await pipe.execute()
        # on its own: the pipeline above is on the job's slot alone (a cluster client sends a pipeline again
        # as a whole when one master's part failed, and RPUSH is not idempotent); the index is read only by
        # ``recent_jobs`` (a job missing from it is still found by its id)
        await self.redis.zadd(JOBS_INDEX, {job: meta.submitted_at})

    async def renew_lease(self, job_id: str, lease_s: float = LEASE_S) -> bool:
        """Extend a validating or submitting job's lease; False when it is in neither state any more (failed,
        or cancelled or expired meanwhile)."""
        return bool(await self._renew(keys=[meta_key(job_id)], args=[lease_s]))

    async def start_job(self, job_id: str) -> str | None:
        """Every prompt was acknowledged: submitting -> running (done if all results are in). The state after
        (a stopped job's state unchanged)."""
        state = await self._start(keys=[meta_key(job_id), totals_key(job_id), explored_key(job_id)])
        return text(state) if state else None

    async def fail_job(self, job_id: str, reason: str, only_if_lease_expired: bool = False) -> bool:
        """Make a validating or submitting job failed and discard all it counted; False when it was in neither
        state (or, ``only_if_lease_expired``, its lease holds)."""
        return await self._failed(job_id, reason, only_if_lease_expired)

    async def _failed(
        self, job_id: str, reason: str, lease: bool, errors: str = "", only_state: str = "", quiet: bool = False
    ) -> bool:
        j = job_id
        keys = [meta_key(j), ids_key(j), done_key(j), totals_key(j), latency_key(j), escalated_key(j)]
        keys += [explored_key(j), inflight_key(j), stopped_key(j), order_key(j)]
        out = await self._fail(keys=keys, args=[reason, int(lease), errors, only_state])
        if out is None:
            return False
        done, escalated, explored = ([text(r) for r in ids] for ids in out)
        orphans = [result_key(j, r) for r in done] + [attempt_key(j, r) for r in escalated]
        orphans += [exploration_key(j, r) for r in explored]
        for i in range(0, len(orphans), CHUNK):  # no longer reachable: the sets naming them are gone
            await self.redis.delete(*orphans[i : i + CHUNK])
        (log.info if quiet else log.warning)("job %s failed: %s", j, reason)
        return True

    async def job_meta(self, job_id: str) -> JobMeta | None:
        """The job's record with the fields the scripts keep beside it (state, total, times, stop, files, ...)."""
        try:
            raw = await self.redis.hmget(meta_key(job_id), list(_FIELDS))
        except ResponseError:  # a job recorded before the meta hash: one JSON string, no state
            legacy = await self.redis.get(meta_key(job_id))
            return JobMeta.model_validate_json(legacy).model_copy(update={"state": "running"}) if legacy else None
        got = dict(zip(_FIELDS, raw, strict=True))
        if got["record"] is None:
            return None
        fields: dict[str, Any] = {"failed_reason": None}
        fields |= {k: text(got[k]) for k in _TEXTS if got[k] is not None}
        fields |= {k: float(text(got[k])) for k in _TIMES if got[k] is not None}
        if got["total"] is not None:
            fields["total"] = int(text(got["total"]))
        if got["errors"] is not None:
            fields["errors"] = json.loads(text(got["errors"]))
        return JobMeta.model_validate(JobMeta.model_validate_json(got["record"]).model_dump() | fields)

    # --- API batches ---------------------------------------------------------------------------------------
    async def create_batch(self, meta: JobMeta, lease_s: float) -> None:
        """Record an API batch as ``validating`` (with ``meta.owner``, ``meta.batch``, ``meta.expires_at``) and a
        lease its intake renews; index it (``JOBS_INDEX``, its owner's batches, the active set). InvalidInput if
        the id exists."""
        job = meta.job_id
        expires = "" if meta.expires_at is None else repr(meta.expires_at)
        args: list[str | float] = [_record(meta, "validating"), meta.owner or "", expires, lease_s, meta.total]
        if not await self._create(keys=[meta_key(job)], args=args):
            raise InvalidInput(f"batch {job} already exists")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(JOBS_INDEX, {job: meta.submitted_at})
            if meta.owner is not None:
                pipe.zadd(owner_batches_key(meta.owner), {job: meta.submitted_at})
            pipe.sadd(ACTIVE_BATCHES, job)
            await pipe.execute()

    async def register_ids(self, job_id: str, request_ids: Sequence[str]) -> bool:
        """Append request ids (input order) to the job's ids set and order list; called chunk by chunk while
        validating, before ``begin_submit``. False (nothing appended) when the batch is no longer validating
        (cancelled, or failed by a sweeper)."""
        keys = [meta_key(job_id), ids_key(job_id), order_key(job_id)]
        for i in range(0, len(request_ids), CHUNK):
            if not await self._register_ids(keys=keys, args=list(request_ids[i : i + CHUNK])):
                return False
        return True

    async def begin_submit(self, job_id: str, record: JobMeta, secret: bytes, lease_s: float) -> bool:
        """validating -> submitting with the job's total, secret, plan (``record``); False when it is no longer
        validating (cancelled, or failed by a sweeper)."""
        args: list[str | float] = [_record(record, "submitting"), record.total, secret.hex(), lease_s]
        args.append(_explore_total(record))
        return bool(await self._begin(keys=[meta_key(job_id)], args=args))

    async def fail_validation(self, job_id: str, reason: str, errors: Sequence[LineError]) -> bool:
        """validating -> failed with the line errors (``JobMeta.errors``); False when not validating."""
        listed = json.dumps([e.model_dump(mode="json") for e in errors])
        return await self._failed(job_id, reason, False, listed, "validating", quiet=True)

    # --- stop, settle --------------------------------------------------------------------------------------
    async def stop_job(self, job_id: str, reason: StopReason, settle_s: float, only_if_due: bool = False) -> JobState:
        """Cancel (or expire: ``only_if_due`` checks ``expires_at`` against Redis's clock) a validating,
        submitting or running job: nothing of it starts any more, the requests not started are stopped, the
        state after is returned (``stopping`` while answers are in flight, else ``cancelled``/``expired``; the
        state unchanged when the job is already terminal or the expiry is not due). NotFound: no such job."""
        if reason not in STOP_REASONS:
            raise ValueError(f"not a stop reason: {reason!r}")
        j = job_id
        keys = [meta_key(j), ids_key(j), done_key(j), inflight_key(j), stopped_key(j), order_key(j)]
        out = await self._stop(keys=keys, args=[reason, settle_s, int(only_if_due)])
        if out is None:
            raise NotFound(f"no job {job_id!r} in Redis")
        state = cast(JobState, text(out))
        if state in ("stopping", reason):
            log.info("job %s: %s (%s)", job_id, reason, state)
        return state

    async def skip(self, prompt: PromptMessage) -> bool:
        """The worker's answer to a ``stopped`` verdict: the request is counted stopped (once); True if it was
        counted now."""
        j = prompt.job_id
        keys = [meta_key(j), ids_key(j), done_key(j), inflight_key(j), stopped_key(j)]
        return bool(await self._script(self._skip, keys, [prompt.request_id]))

    async def settle_overdue(self, job_id: str) -> JobState | None:
        """A ``stopping`` job past its settle deadline: its answers still in flight are counted stopped (their
        late writes are refused) and it ends ``cancelled``/``expired``; None when not due."""
        out = await self._settle(keys=[meta_key(job_id), inflight_key(job_id), stopped_key(job_id)])
        if out is None:
            return None
        log.warning("job %s: answers still in flight at its settle deadline are counted stopped", job_id)
        return cast(JobState, text(out))

    # --- finalize, indexes ---------------------------------------------------------------------------------
    async def request_ids_in_order(self, job_id: str, start: int, count: int) -> list[str]:
        """``count`` request ids of the job from input position ``start`` (fewer at the end)."""
        if count <= 0:
            return []
        return [text(r) for r in await self.redis.lrange(order_key(job_id), start, start + count - 1)]

    async def claim_finalize(self, job_id: str, ttl_s: float) -> bool:
        """Take the job's finalize lock (one ``serve`` replica writes its files); False when another holds it."""
        token = secrets.token_hex(8)
        return bool(await self.redis.set(finalize_lock_key(job_id), token, nx=True, px=max(int(ttl_s * 1000), 1)))

    async def mark_finalized(self, job_id: str, output_file_id: str | None, error_file_id: str | None) -> bool:
        """A settled job's files are written: record their ids and ``finalized_at``, leave the active set. False
        when it was finalized before (nothing changes) or is not terminal (done, cancelled, expired, failed)."""
        code = int(await self._finalized(keys=[meta_key(job_id)], args=[output_file_id or "", error_file_id or ""]))
        if code >= 0:
            await self.redis.srem(ACTIVE_BATCHES, job_id)
        return code == 1

    async def active_batches(self) -> list[str]:
        return sorted(text(r) for r in await self.redis.smembers(ACTIVE_BATCHES))

    async def owner_batches(self, owner: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """The owner's batch ids, newest first, after the batch ``after`` (exclusive); and whether more follow.
        Unknown ``after`` (not the owner's): an empty page."""
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        out = await self._owner_page(keys=[owner_batches_key(owner)], args=[after or "", limit])
        ids = [text(r) for r in out[1:]]
        return ids[:limit], len(ids) > limit
