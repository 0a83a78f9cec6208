"""Redis: job and result records, written atomically and idempotently (the keys: ``workers.store.keys``; the
client and its retry policy: ``workers.store.client``).

Who may change a job. Anyone who can write to the prompts topic can publish a message naming any job, so
a request counts only if the submitter registered it, and the inference worker is the gate (the router
needs no Redis: a rejected prompt costs one classification there, nothing more). Two checks, both needed:

* ``tr:{job}:ids``, the set of the job's request ids, written at submit before anything is published. A
  request id must equal ``<job_id>/<custom_id>``, so a new custom id under an existing job is not in the set.
  ``WRITE_RESULT`` and ``WRITE_ESCALATION`` (``workers.store.lua``) check membership, and that the job has
  not failed, in the same atomic step that counts: nothing unregistered is ever counted, whatever a worker
  does. Memory (``MEMORY USAGE``, Valkey 9.1): a set of 10,000 ids of 31 bytes (``job-<12 hex>/mmlu-pro-
  <5 digits>``) takes 548,376 bytes, 55 bytes per request (39 for 22-byte ids); the done-set holds the same
  ids again once they are answered. The meta hash with the secret is 560 bytes.
* a per-job secret (32 random bytes, in the meta hash, never on Kafka) and the prompt's ``mac``, an HMAC
  over job id, custom id, line, submitted_at and the body's digest (``workers.store.integrity``). The set
  alone would let a forged body under a registered id win the first-writer-wins race; the MAC rejects it.
  Redis' Lua has no HMAC, so the MAC is checked in the worker (``Store.admit``) before the LLM call, with
  the secret fetched by the same round trip that checks the rest and cached per job.

``Store.admit`` is one Lua round trip (``workers.store.lua.ADMIT``) and answers a ``Verdict``: ok, done (a
redelivery), or why the prompt is rejected; the worker dead-letters the rejected ones with that reason.
Autopipelined, it costs 41 µs a call against 16 µs for the ``is_done`` it replaces (2,000 concurrent calls,
Valkey on loopback, 2 shared cores), of which 9 µs is the MAC of a 600-character prompt.

A job's life (``JobMeta.state`` in the meta hash): ``register_job`` writes it ``submitting`` with a lease
the submitter renews while publishing; ``start_job`` makes it ``running`` (or ``done``) once every prompt
was acknowledged; the last result makes a running job ``done``. ``fail_job`` makes a submitting job
``failed`` in one step that also discards everything already counted (totals, latencies, results), so the
prompts published before the failure count toward nothing; later writes of its requests are refused. A
submitter that vanished is failed by the first ``summary`` after its lease expired (Redis' clock).

Exploration (issue 14 section 3). A prompt of the job's exploration sample is answered twice: its routed result
(``WRITE_RESULT``, the done set) and the other arm's answer (``WRITE_EXPLORATION``: the explored set, the record
``tr:{job}:explore:<id>``, and the ``explore:<route>:*`` counters of the totals hash, never the routed ones).
Each is first-writer-wins on its own set, so either may come first and a redelivery of either counts once. A job
whose plan has an exploration sample holds ``explore_total`` in its meta hash (``register_job``); it is ``done``
only when every result is in and the explored set holds that many ids (``START``, ``WRITE_RESULT``,
``WRITE_EXPLORATION`` check both). ``FAIL`` discards the explored set and its records with the rest.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from schemas.messages import AttemptSummary, PromptMessage
from schemas.records import ExplorationRecord, JobMeta, JobTotals, RequestResult, RouteTotals
from workers.errors import InvalidInput
from workers.store.autopipe import AutoPipeline
from workers.store.client import REDIS_BACKOFF, REDIS_RETRIES, redis_client
from workers.store.integrity import Verdict, mac_matches, precheck
from workers.store.keys import (
    ESCALATION,
    EXPLORATION,
    JOBS_INDEX,
    ROUTES,
    TOKEN_KINDS,
    attempt_key,
    done_key,
    escalated_key,
    exploration_key,
    explored_key,
    ids_key,
    latency_key,
    meta_key,
    result_key,
    totals_key,
)
from workers.store.lifecycle import Lifecycle
from workers.store.lua import ADMIT, FAIL, REGISTER, RENEW, START, WRITE_ESCALATION, WRITE_EXPLORATION, WRITE_RESULT

log = logging.getLogger(__name__)

__all__ = [
    "ESCALATION",
    "EXPLORATION",
    "JOBS_INDEX",
    "LEASE_S",
    "REDIS_BACKOFF",
    "REDIS_RETRIES",
    "ROUTES",
    "SECRET_CACHE",
    "TOKEN_KINDS",
    "Store",
    "attempt_key",
    "done_key",
    "escalated_key",
    "exploration_key",
    "explored_key",
    "ids_key",
    "latency_key",
    "meta_key",
    "redis_client",
    "result_key",
    "totals_key",
]

LEASE_S = 60.0  # a submitting job whose submitter has not renewed its lease for this long is failed
SECRET_CACHE = 10_000  # job secrets a Store keeps (32 bytes each)
_CHUNK = 1000


_REFUSED = {-1: "not a registered request of its job", -2: "its job failed at submit"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Store(Lifecycle):
    """Job and result records over one Redis connection pool (opened by the caller, closed by it).

    ``autopipeline``: the per-request calls (``admit``, ``is_done``, ``write_result``, ``write_escalation``,
    ``write_exploration``) of
    concurrent tasks share round trips (``workers.store.autopipe``); what each call returns is unchanged.
    """

    def __init__(self, redis: Redis, autopipeline: bool = False) -> None:
        self.redis = redis
        self._write = redis.register_script(WRITE_RESULT)
        self._escalate = redis.register_script(WRITE_ESCALATION)
        self._explore = redis.register_script(WRITE_EXPLORATION)
        self._admit = redis.register_script(ADMIT)
        self._register = redis.register_script(REGISTER)
        self._renew = redis.register_script(RENEW)
        self._start = redis.register_script(START)
        self._fail = redis.register_script(FAIL)
        self._secrets: dict[str, bytes] = {}
        self.pipeline = AutoPipeline(redis) if autopipeline else None

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        if self.pipeline is None:
            return await script(keys=keys, args=args)

        def queue(pipe: Pipeline) -> None:
            pipe.scripts.add(script)  # type: ignore[arg-type]  # redis-py types it as the sync Script
            pipe.evalsha(script.sha, len(keys), *keys, *args)

        try:
            return await self.pipeline.call(queue)
        except NoScriptError:
            # Redis restarted (empty script cache) after the pipeline checked its scripts, and the client's
            # Retry replayed it there: the script did not run; the next pipeline loads it again
            return await self.pipeline.call(queue)

    async def register_job(
        self, meta: JobMeta, request_ids: Sequence[str], secret: bytes, lease_s: float = LEASE_S
    ) -> None:
        """Record a new job as ``submitting`` with its secret, then its request ids; before any publish.

        InvalidInput if the job exists (nothing changes). If Redis fails after the first step, the job stays
        ``submitting`` until its lease expires, then is failed (nothing of it was published)."""
        record = meta.model_copy(update={"state": "submitting", "failed_reason": None}).model_dump_json()
        explore_total = meta.plan.explore_total if meta.plan is not None else 0
        args: list[str | int | float] = [record, meta.total, secret.hex(), lease_s, explore_total]
        if not await self._register(keys=[meta_key(meta.job_id)], args=args):
            raise InvalidInput(f"job {meta.job_id} already exists")
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(request_ids), _CHUNK):
                pipe.sadd(ids_key(meta.job_id), *request_ids[i : i + _CHUNK])
            pipe.zadd(JOBS_INDEX, {meta.job_id: meta.submitted_at})
            await pipe.execute()

    async def renew_lease(self, job_id: str, lease_s: float = LEASE_S) -> bool:
        """Extend a submitting job's lease; False when it is no longer submitting (it was failed meanwhile)."""
        return bool(await self._renew(keys=[meta_key(job_id)], args=[lease_s]))

    async def start_job(self, job_id: str) -> str | None:
        """Every prompt was acknowledged: submitting -> running (done if all results are in). The state after."""
        state = await self._start(keys=[meta_key(job_id), totals_key(job_id), explored_key(job_id)])
        return _text(state) if state else None

    async def fail_job(self, job_id: str, reason: str, only_if_lease_expired: bool = False) -> bool:
        """Make a submitting job failed and discard all it counted; False when it was not submitting."""
        keys = [meta_key(job_id), ids_key(job_id), done_key(job_id), totals_key(job_id), latency_key(job_id)]
        keys += [escalated_key(job_id), explored_key(job_id)]
        out = await self._fail(keys=keys, args=[reason, int(only_if_lease_expired)])
        if out is None:
            return False
        done, escalated, explored = ([_text(r) for r in ids] for ids in out)
        orphans = [result_key(job_id, r) for r in done] + [attempt_key(job_id, r) for r in escalated]
        orphans += [exploration_key(job_id, r) for r in explored]
        for i in range(0, len(orphans), _CHUNK):  # no longer reachable: the sets naming them are gone
            await self.redis.delete(*orphans[i : i + _CHUNK])
        log.warning("job %s failed: %s", job_id, reason)
        return True

    async def job_meta(self, job_id: str) -> JobMeta | None:
        try:
            record, state, reason = await self.redis.hmget(meta_key(job_id), ["record", "state", "failed_reason"])
        except ResponseError:  # a job recorded before the meta hash: one JSON string, no state
            legacy = await self.redis.get(meta_key(job_id))
            return JobMeta.model_validate_json(legacy).model_copy(update={"state": "running"}) if legacy else None
        if record is None:
            return None
        fields = {"state": _text(state), "failed_reason": _text(reason) if reason is not None else None}
        return JobMeta.model_validate(JobMeta.model_validate_json(record).model_dump() | fields)

    async def admit(self, prompt: PromptMessage, shadow: bool = False) -> Verdict:
        """Whether the inference worker may answer ``prompt``: ok, done (skip), or why it is rejected. ``shadow``:
        for its exploration answer, ``done`` when that is recorded (the routed result does not block it)."""
        early = precheck(prompt)
        if early is not None:
            return early
        if shadow and (prompt.plan is None or not prompt.plan.explore):  # the plan is under the MAC, checked below
            return Verdict.NOT_EXPLORED
        job = prompt.job_id
        secret = self._secrets.get(job)
        keys = [meta_key(job), ids_key(job), explored_key(job) if shadow else done_key(job)]
        reply = await self._script(self._admit, keys, [prompt.request_id, int(secret is None)])
        verdict = Verdict(_text(reply[0]))
        if secret is None and len(reply) > 1 and reply[1]:
            secret = bytes.fromhex(_text(reply[1]))
            if len(self._secrets) >= SECRET_CACHE:
                del self._secrets[next(iter(self._secrets))]
            self._secrets[job] = secret
        if verdict in (Verdict.UNKNOWN_JOB, Verdict.FAILED_JOB, Verdict.UNREGISTERED):
            return verdict
        if secret is None or not mac_matches(prompt, secret):
            return Verdict.BAD_MAC
        return verdict

    async def is_done(self, job_id: str, request_id: str) -> bool:
        if self.pipeline is None:
            return bool(await self.redis.sismember(done_key(job_id), request_id))
        return bool(await self.pipeline.call(lambda pipe: pipe.sismember(done_key(job_id), request_id)))

    async def write_result(self, result: RequestResult) -> bool:
        """Record a request's outcome and add it to the job totals, once. False if already recorded, or
        refused (not a registered request of its job, or the job failed): then nothing changes."""
        job = result.job_id
        keys = [done_key(job), result_key(job, result.request_id), totals_key(job), latency_key(job)]
        written = await self._script(
            self._write,
            [*keys, ids_key(job), meta_key(job), explored_key(job)],
            [
                result.request_id,
                result.model_dump_json(),
                result.status,
                result.route.route,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                result.usage.reasoning_tokens,
                repr(result.latency_s),
            ],
        )
        return self._counted(int(written), result.request_id)

    async def write_escalation(self, job_id: str, request_id: str, attempt: AttemptSummary) -> bool:
        """Record a request's escalated first attempt and add its tokens to the job's escalation bucket, once."""
        keys = [escalated_key(job_id), attempt_key(job_id, request_id), totals_key(job_id)]
        written = await self._script(
            self._escalate,
            [*keys, ids_key(job_id), meta_key(job_id)],
            [
                request_id,
                attempt.model_dump_json(),
                attempt.prompt_tokens,
                attempt.completion_tokens,
                attempt.reasoning_tokens,
            ],
        )
        return self._counted(int(written), request_id)

    async def write_exploration(self, record: ExplorationRecord) -> bool:
        """Record a request's exploration (shadow) answer and add its tokens to the job's exploration bucket
        (``explore:<route>:*``, never the routed counters), once; False if already recorded, or refused (as
        ``write_result``). The job becomes done when this was the last answer it waited for."""
        job, rid = record.job_id, record.request_id
        u = record.usage
        written = await self._script(
            self._explore,
            [explored_key(job), exploration_key(job, rid), totals_key(job), ids_key(job), meta_key(job)],
            [
                rid,
                record.model_dump_json(),
                record.status,
                record.route.route,
                u.prompt_tokens,
                u.completion_tokens,
                u.reasoning_tokens,
            ],
        )
        return self._counted(int(written), rid)

    @staticmethod
    def _counted(code: int, request_id: str) -> bool:
        if code < 0:
            log.warning("not counted: %s is %s", request_id, _REFUSED[code])
        return code == 1

    async def totals(self, job_id: str) -> JobTotals:
        raw = await self.redis.hgetall(totals_key(job_id))
        counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        routes = {}
        for route in ROUTES:
            fields = {f: counts.get(f"{route}:{f}", 0) for f in RouteTotals.model_fields}
            routes[route] = RouteTotals(**fields)
        esc = RouteTotals(**{f: counts.get(f"{ESCALATION}:{f}", 0) for f in RouteTotals.model_fields})
        explore = {
            route: RouteTotals(**{f: counts.get(f"{EXPLORATION}:{route}:{f}", 0) for f in RouteTotals.model_fields})
            for route in ROUTES
        }
        return JobTotals(
            completed=counts.get("completed", 0),
            failed=counts.get("failed", 0),
            routes=routes,
            escalations=esc,
            exploration=explore,
        )

    async def latency_percentiles(self, job_id: str, qs: Iterable[float] = (0.5, 0.95, 0.99)) -> dict[str, float]:
        """Nearest-rank percentiles of submit-to-stored latency, read by rank from the sorted set."""
        key = latency_key(job_id)
        n = int(await self.redis.zcard(key))
        out: dict[str, float] = {}
        for q in qs:
            name = f"p{round(q * 100):d}"
            if n == 0:
                out[name] = 0.0
                continue
            rank = min(max(math.ceil(q * n) - 1, 0), n - 1)
            hit = await self.redis.zrange(key, rank, rank, withscores=True)
            out[name] = float(hit[0][1]) if hit else 0.0
        return out

    async def results(self, job_id: str, chunk: int = 500) -> AsyncIterator[RequestResult]:
        """Every recorded result of a job (unordered; callers sort by ``line``)."""
        ids: list[str] = []
        async for rid in self.redis.sscan_iter(done_key(job_id), count=chunk):
            ids.append(rid.decode() if isinstance(rid, bytes) else str(rid))
        for i in range(0, len(ids), chunk):
            for result in await self.results_of(job_id, ids[i : i + chunk], chunk):
                yield result

    async def results_of(self, job_id: str, request_ids: Sequence[str], chunk: int = 500) -> list[RequestResult]:
        """The recorded results of these requests of a job (those not recorded are left out)."""
        out: list[RequestResult] = []
        for i in range(0, len(request_ids), chunk):
            keys = [result_key(job_id, rid) for rid in request_ids[i : i + chunk]]
            out.extend(RequestResult.model_validate_json(raw) for raw in await self.redis.mget(keys) if raw)
        return out

    async def explored_pairs(self, job_id: str) -> tuple[list[RequestResult], list[ExplorationRecord]]:
        """A job's exploration answers and the routed results of the same requests (what the savings report and
        the outcome-records export read)."""
        explorations = [e async for e in self.explorations(job_id)]
        return await self.results_of(job_id, [e.request_id for e in explorations]), explorations

    async def explorations(self, job_id: str, chunk: int = 500) -> AsyncIterator[ExplorationRecord]:
        """Every recorded exploration (shadow) answer of a job (unordered)."""
        ids: list[str] = []
        async for rid in self.redis.sscan_iter(explored_key(job_id), count=chunk):
            ids.append(_text(rid))
        for i in range(0, len(ids), chunk):
            keys = [exploration_key(job_id, rid) for rid in ids[i : i + chunk]]
            for raw in await self.redis.mget(keys):
                if raw:
                    yield ExplorationRecord.model_validate_json(raw)

    async def recent_jobs(self, limit: int = 20) -> list[str]:
        raw: list[Any] = await self.redis.zrevrange(JOBS_INDEX, 0, limit - 1)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
