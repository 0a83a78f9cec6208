"""The inference loop: consume routed prompts -> call the LLM -> store result and counters -> commit.

Each message is a task of one task group, at most ``concurrency`` at once (a semaphore: FastStream's
concurrent subscriber, bounded + semaphore + task group); when every slot is busy the worker pauses its
partitions instead of buffering. A handler's failure cancels the others and ends ``run`` with its error.
An offset is committed (`workers.kafka.commit.Checkpoint`) only after Redis accepted the result of that
message and of every earlier message of its partition. Redis calls ride out short outages in the client
itself (`workers.store.jobstore.redis_client`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.messages import RoutedMessage
from schemas.records import AnsweredBy, RequestResult
from workers.inference.breaker import Breakers
from workers.inference.client import Completion, LLMClient, LLMFailed
from workers.inference.escalation import answer_confidence, attempt_summary, escalated_decision
from workers.inference.fallback import Endpoints, Fallback, PayloadFor
from workers.inference.families import build_request, family_for
from workers.inference.results import completed, explore_failed, explored, failed
from workers.kafka.commit import Checkpoint, DrainOnRevoke
from workers.kafka.deadletter import dead_letter
from workers.runtime.crashpoints import CrashPoints
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.tasks import task_group
from workers.settings import Settings
from workers.store.integrity import RejectedRequest, Verdict
from workers.store.jobstore import Store

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
FETCH_WAIT_MS = 200  # longest one fetch waits for records
SLOT_WAIT_S = 0.5  # longest the loop waits for a free slot before it looks at stop and the commit interval


@dataclass
class InferenceStats:
    completed: int = 0
    failed: int = 0
    duplicates: int = 0
    dead: int = 0
    escalated: int = 0
    explored: int = 0  # exploration (shadow) answers recorded, completed or failed
    stopped: int = 0  # routed messages not started because their job was cancelled or expired


class InferenceWorker:
    def __init__(
        self,
        s: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        llm: LLMClient,
        store: Store,
        crash: CrashPoints | None = None,
        metrics: WorkerMetrics | None = None,
        fallback: Fallback | None = None,
    ) -> None:
        self.s = s
        self.cfg = s.inference
        self.metrics = metrics or WorkerMetrics("inference", "")
        breakers = Breakers(self.cfg.breaker_failures, self.cfg.breaker_cooldown_s) if fallback else None
        self.endpoints = Endpoints(llm, fallback, breakers, self.metrics)
        self.metrics.watch_breakers(self.endpoints.breaker_states)
        self.crash = crash or CrashPoints()
        self.consumer = consumer
        self.producer = producer
        self.llm = llm
        self.store = store
        self.checkpoint = Checkpoint(
            consumer,
            # each commit is a broker round trip the loop waits for; a crash redelivers at most this much more,
            # skipped as recorded (always committed at drain and before a rebalance)
            interval_s=self.cfg.commit_interval_s,
            on_commit=self.metrics.committed,
            on_forget=self.metrics.forget,
        )
        self.stats = InferenceStats()
        self._slots = asyncio.Semaphore(self.cfg.concurrency)
        self._busy = 0  # requests in flight (slots taken)
        self._idle = asyncio.Event()  # set while none is
        self._idle.set()
        self._paused = False

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return DrainOnRevoke("inference", self.checkpoint, self.quiesce)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; then stop fetching, finish what is in flight and commit."""
        async with task_group() as tg:
            while not stop.is_set():
                if self._slots.locked():  # every slot busy: fetch nothing (no unbounded buffering)
                    self._pause(True)
                    await self._slot_freed(SLOT_WAIT_S)
                else:
                    self._pause(False)
                    free = self.cfg.concurrency - self._busy
                    fetched = await self.consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=free)
                    if fetched:
                        self.metrics.batch_size.observe(sum(len(v) for v in fetched.values()))
                    for tp, records in fetched.items():
                        for record in records:
                            await self._spawn(tg, tp, record)
                await self.checkpoint.commit_due()
            if self._busy:
                log.info("draining %d requests in flight", self._busy)
        await self.checkpoint.commit()

    async def quiesce(self, revoked: Collection[TopicPartition] = ()) -> None:
        """Before partitions move: finish every request in flight (the consumer fetches nothing meanwhile)."""
        await self._idle.wait()
        self._paused = False  # the next assignment starts unpaused

    async def _spawn(self, tg: asyncio.TaskGroup, tp: TopicPartition, record: Record) -> None:
        await self._slots.acquire()  # never waits: no more were fetched than slots are free
        self._busy += 1
        self._idle.clear()
        self.checkpoint.begin(tp, record.offset)
        self.metrics.consumed(record.topic)
        tg.create_task(self._handle(tp, record)).add_done_callback(self._release)

    def _release(self, _: asyncio.Task[None]) -> None:
        self._slots.release()
        self._busy -= 1
        if not self._busy:
            self._idle.set()

    async def _slot_freed(self, timeout_s: float) -> None:
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._slots.acquire()
                self._slots.release()

    def _pause(self, pause: bool) -> None:
        if pause == self._paused:
            return
        parts = self.consumer.assignment()
        if pause:
            self.consumer.pause(*parts)
        else:
            self.consumer.resume(*parts)
        self._paused = pause

    async def _handle(self, tp: TopicPartition, record: Record) -> None:
        with self.checkpoint.finishing(tp, record.offset):  # done when the answer ends without an error
            await self._answer(record)

    async def _answer(self, record: Record) -> None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            msg = RoutedMessage.model_validate_json(record.value or b"")
        except ValidationError as exc:
            log.warning("dead-lettering %s: not a routed message", where)
            await self._dead(record, f"invalid routed message: {exc.errors()[0]['msg']}", exc, None, None)
            return
        prompt, route = msg.prompt, msg.route
        # one round trip; the MAC checked here. A shadow is admitted against the explored set: its routed
        # result being in does not block it, its own record being in skips it
        verdict = await (self.store.admit(prompt, shadow=True) if msg.shadow else self.store.admit(prompt))
        if verdict.rejected:  # not a request its job's submitter registered and signed: never answered
            log.warning("dead-lettering %s: %s", where, verdict.value)
            rejected = RejectedRequest(verdict)
            await self._dead(record, str(rejected), rejected, prompt.request_id, prompt.job_id)
            return
        if verdict is Verdict.STOPPED:  # its job was cancelled or expired: no LLM call, no dead letter
            if not msg.shadow:  # a shadow is simply dropped: the routed request is what counts
                counted = await self.store.skip(prompt)
                self.stats.stopped += 1
                self.metrics.stopped(route.route)
                log.debug("%s: its job is stopped, not started (counted now: %s)", where, counted)
            return
        if verdict is Verdict.DONE:
            self.stats.duplicates += 1
            if not msg.shadow:  # the routed series count routed requests only
                self.metrics.skipped_duplicate(route.route)
            log.debug("%s: request already recorded, skipping", where)
            return
        if msg.shadow:
            await self._explore(msg, self._payload_for(msg, logprobs=False), where)
            return
        threshold = self._escalation_threshold(msg)
        try:
            completion, by = await self._complete(msg, self._payload_for(msg, logprobs=threshold is not None))
            self.crash.hit("after_llm")
            result = completed(msg, completion, by)
            if threshold is not None and await self._escalated(record, msg, result, completion, threshold):
                return
        except LLMFailed as exc:
            log.warning("%s: request failed after %d attempts: %s", where, exc.attempts, exc)
            result = failed(msg, exc)
            await self._dead(record, f"LLM request failed: {exc}", exc, prompt.request_id, prompt.job_id)
        written = await self.store.write_result(result)
        self.metrics.result(result, written)
        if written:
            if result.status == "completed":
                self.stats.completed += 1
            else:
                self.stats.failed += 1
        else:
            self.stats.duplicates += 1
        self.crash.hit("after_store")

    def _payload_for(self, msg: RoutedMessage, logprobs: bool) -> PayloadFor:
        """The request body for a model: the prompt's, that model, reasoning switched the way its family
        expects (the fallback model may be of another family), ``logprobs`` when the answer may escalate."""
        body, route = msg.prompt.body.model_dump(exclude_none=True), msg.route

        def payload(model: str) -> dict[str, Any]:
            family = family_for(model, self.cfg.families, self.cfg.default_family)
            out = build_request(body, model, family, route.use_reasoning, route.reasoning_effort)
            if logprobs:
                out.setdefault("logprobs", True)
            return out

        return payload

    async def _complete(self, msg: RoutedMessage, payload_for: PayloadFor) -> tuple[Completion, AnsweredBy | None]:
        route = msg.route
        base_url = self.s.llm_url(route.route, route.model)
        return await self.endpoints.complete(route.route, base_url, route.model, payload_for)

    async def _explore(self, msg: RoutedMessage, payload_for: PayloadFor, where: str) -> None:
        """An exploration shadow: the LLM call as for a routed message (never escalated), then its record and
        the job's exploration bucket, once. A failure is a failed record, not a dead letter (not the user's
        request: the routed one is)."""
        try:
            completion, by = await self._complete(msg, payload_for)
            self.crash.hit("after_llm")
            record = explored(msg, completion, by)
        except LLMFailed as exc:
            log.warning("%s: exploration answer failed after %d attempts: %s", where, exc.attempts, exc)
            record = explore_failed(msg, exc)
        written = await self.store.write_exploration(record)
        self.metrics.explored(record, written)
        if written:
            self.stats.explored += 1
        else:
            self.stats.duplicates += 1
        self.crash.hit("after_store")

    def _escalation_threshold(self, msg: RoutedMessage) -> float | None:
        """The threshold when this message's answer may be escalated: direct route, first attempt, not in the
        exploration sample (neither a shadow nor its routed twin: the pair stays one direct and one reasoning
        answer, what the savings report and `fit --from-job` compare)."""
        if self.cfg.escalate_below is None or msg.route.route != "direct" or msg.previous_attempt is not None:
            return None
        if msg.shadow or msg.route.explore:
            return None
        return self.cfg.escalate_below

    async def _escalated(
        self, record: Record, msg: RoutedMessage, result: RequestResult, c: Completion, threshold: float
    ) -> bool:
        """Below the threshold: record the first attempt (once), publish the second, await the ack."""
        confidence = answer_confidence(c.body)
        if confidence >= threshold:
            return False
        attempt = attempt_summary(result, confidence, threshold)
        p = msg.prompt
        await self.store.write_escalation(p.job_id, p.request_id, attempt)
        self.crash.hit("after_escalation_store")
        out = RoutedMessage(
            prompt=p,
            route=escalated_decision(msg.route, self.cfg.escalate_model),
            routed_at=time.time(),
            previous_attempt=attempt,
        )
        topic = self.s.escalation_topic
        fut = await self.producer.send(topic, out.model_dump_json().encode(), key=record.key)
        await fut
        self.metrics.produced(topic)
        self.stats.escalated += 1
        log.info("request %s escalated (confidence %.3f < %.3f) to %s", p.request_id, confidence, threshold, topic)
        return True

    async def _dead(
        self, record: Record, reason: str, exc: BaseException, request_id: str | None, job_id: str | None
    ) -> None:
        letter = dead_letter("inference", record, reason, exc, request_id=request_id, job_id=job_id)
        dead = self.s.topics.dead
        fut = await self.producer.send(dead, letter.model_dump_json().encode(), key=record.key)
        await fut
        self.stats.dead += 1
        self.metrics.dead_letter(dead)
