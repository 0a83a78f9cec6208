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

A job's life (``JobMeta.state`` in the meta hash; ``workers.store.lifecycle``): ``register_job`` writes it
``submitting`` with a lease the submitter renews while publishing (an API batch is ``validating`` first:
``create_batch``, ``begin_submit``); ``start_job`` makes it ``running`` (or ``done``) once every prompt was
acknowledged; the last result makes a running job ``done``. ``fail_job`` makes a validating or submitting job
``failed`` in one step that also discards everything already counted (totals, latencies, results), so the
prompts published before the failure count toward nothing; later writes of its requests are refused. A
submitter that vanished is failed by the first ``summary`` after its lease expired (Redis' clock). A cancel or
an expiry (``stop_job``) stops a job: ``admit`` answers ``stopped`` for its requests, and they are counted
stopped (``Lifecycle.skip``), while the answers already in flight are kept.

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

from schemas.messages import AttemptSummary, PromptMessage
from schemas.records import ExplorationRecord, JobTotals, RequestResult, RouteTotals
from workers.store.client import REDIS_BACKOFF, REDIS_RETRIES, RedisClient, redis_client
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
    inflight_key,
    latency_key,
    meta_key,
    result_key,
    stopped_key,
    totals_key,
)
from workers.store.lifecycle import LEASE_S, SETTLE_S, Lifecycle, text
from workers.store.lua import ADMIT, WRITE_ESCALATION, WRITE_EXPLORATION, WRITE_RESULT

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

SECRET_CACHE = 10_000  # job secrets a Store keeps (32 bytes each)
_REFUSED = {
    -1: "not a registered request of its job",
    -2: "its job failed at submit",
    -3: "its job ended (cancelled or expired) before this answer came",
}


class Store(Lifecycle):
    """Job and result records over one Redis connection pool (opened by the caller, closed by it).

    ``autopipeline``: the per-request calls (``admit``, ``is_done``, ``write_result``, ``write_escalation``,
    ``write_exploration``) of
    concurrent tasks share round trips (``workers.store.autopipe``); what each call returns is unchanged.
    """

    def __init__(self, redis: RedisClient, autopipeline: bool = False, settle_s: float = SETTLE_S) -> None:
        super().__init__(redis, autopipeline, settle_s)
        self._write = redis.register_script(WRITE_RESULT)
        self._escalate = redis.register_script(WRITE_ESCALATION)
        self._explore = redis.register_script(WRITE_EXPLORATION)
        self._admit = redis.register_script(ADMIT)
        self._secrets: dict[str, bytes] = {}

    async def admit(self, prompt: PromptMessage, shadow: bool = False) -> Verdict:
        """Whether the inference worker may answer ``prompt``: ok (a routed one is then in flight), done (skip),
        stopped (its job was cancelled or expired: ``skip`` it), or why it is rejected. ``shadow``: for its
        exploration answer, ``done`` when that is recorded (the routed result does not block it). An admit
        after the job's ``expires_at`` expires it (settle deadline: ``settle_s``)."""
        early = precheck(prompt)
        if early is not None:
            return early
        if shadow and (prompt.plan is None or not prompt.plan.explore):  # the plan is under the MAC, checked below
            return Verdict.NOT_EXPLORED
        job = prompt.job_id
        secret = self._secrets.get(job)
        keys = [meta_key(job), ids_key(job), done_key(job), explored_key(job), inflight_key(job), stopped_key(job)]
        # only a prompt whose MAC was checked is marked in flight (a forged one must not hold up a stopped job)
        checked = secret is not None and mac_matches(prompt, secret)
        args = [prompt.request_id, int(secret is None), int(shadow), self.settle_s, int(checked)]
        reply = await self._script(self._admit, keys, args)
        verdict = Verdict(text(reply[0]))
        if secret is None and len(reply) > 1 and reply[1]:
            secret = bytes.fromhex(text(reply[1]))
            if len(self._secrets) >= SECRET_CACHE:
                del self._secrets[next(iter(self._secrets))]
            self._secrets[job] = secret
        if verdict in (Verdict.UNKNOWN_JOB, Verdict.FAILED_JOB, Verdict.UNREGISTERED):
            return verdict
        if secret is None or not (checked or mac_matches(prompt, secret)):
            return Verdict.BAD_MAC
        if verdict is Verdict.OK and not checked and not shadow:  # the secret came with this call: mark it now
            again = await self._script(self._admit, keys, [prompt.request_id, 0, 0, self.settle_s, 1])
            verdict = Verdict(text(again[0]))
        return verdict

    async def is_done(self, job_id: str, request_id: str) -> bool:
        if self.pipeline is None:
            return bool(await self.redis.sismember(done_key(job_id), request_id))
        return bool(await self.pipeline.call(lambda pipe: pipe.sismember(done_key(job_id), request_id)))

    async def write_result(self, result: RequestResult) -> bool:
        """Record a request's outcome and add it to the job totals, once. False if already recorded, or
        refused (not a registered request of its job, the job failed, or it ended: cancelled or expired, its
        requests still in flight given up on): then nothing changes."""
        job = result.job_id
        keys = [done_key(job), result_key(job, result.request_id), totals_key(job), latency_key(job)]
        keys += [ids_key(job), meta_key(job), explored_key(job), inflight_key(job), stopped_key(job)]
        written = await self._script(
            self._write,
            keys,
            [
                result.request_id,
                result.model_dump_json(),
                result.status,
                result.route.route,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
                result.usage.reasoning_tokens,
                repr(result.latency_s),
                1 if result.answered_by is not None and result.answered_by.fallback else 0,
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
        if code == -3:  # expected after a cancel: an answer that came after its job was settled
            log.info("not counted: %s: %s", request_id, _REFUSED[code])
        elif code < 0:
            log.warning("not counted: %s is %s", request_id, _REFUSED[code])
        return code == 1

    async def totals(self, job_id: str) -> JobTotals:
        """The job's counters, and the sizes of its stopped and in-flight sets (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(totals_key(job_id))
            pipe.scard(stopped_key(job_id))
            pipe.scard(inflight_key(job_id))
            raw, stopped, in_flight = await pipe.execute()
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
            fallback=counts.get("fallback", 0),
            stopped=int(stopped),
            in_flight=int(in_flight),
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
            ids.append(text(rid))
        for i in range(0, len(ids), chunk):
            keys = [exploration_key(job_id, rid) for rid in ids[i : i + chunk]]
            for raw in await self.redis.mget(keys):
                if raw:
                    yield ExplorationRecord.model_validate_json(raw)

    async def recent_jobs(self, limit: int = 20) -> list[str]:
        raw: list[Any] = await self.redis.zrevrange(JOBS_INDEX, 0, limit - 1)
        return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
