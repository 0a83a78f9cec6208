"""The inference loop: consume routed prompts -> call the LLM -> store result and counters -> commit.

Up to ``concurrency`` requests run at once; when all slots are busy the worker pauses its partitions
instead of buffering. An offset is committed only after Redis accepted the result of that message and
of every earlier message of its partition. Redis calls ride out short outages in the client itself
(`workers.store.jobstore.redis_client`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from pydantic import ValidationError

from schemas.messages import RoutedMessage
from schemas.records import RequestResult
from workers.inference.client import Completion, LLMClient, LLMFailed
from workers.inference.escalation import answer_confidence, attempt_summary, escalated_decision
from workers.inference.families import build_request, family_for
from workers.inference.results import completed, failed
from workers.kafka.deadletter import dead_letter
from workers.kafka.offsets import OffsetTracker
from workers.runtime.crashpoints import CrashPoints
from workers.runtime.metrics import WorkerMetrics
from workers.settings import Settings
from workers.store.jobstore import Store

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass
class InferenceStats:
    completed: int = 0
    failed: int = 0
    duplicates: int = 0
    dead: int = 0
    escalated: int = 0


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
    ) -> None:
        self.s = s
        self.cfg = s.inference
        self.metrics = metrics or WorkerMetrics("inference", "")
        self.crash = crash or CrashPoints()
        self.consumer = consumer
        self.producer = producer
        self.llm = llm
        self.store = store
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.stats = InferenceStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._paused = False
        self._last_commit = 0.0

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _DrainOnRevoke(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; then stop fetching, finish what is in flight and commit."""
        while not stop.is_set():
            free = self.cfg.concurrency - len(self._tasks)
            if free <= 0:
                self._pause(True)
                await asyncio.wait(self._tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            else:
                self._pause(False)
                fetched = await self.consumer.getmany(timeout_ms=200, max_records=free)
                if fetched:
                    self.metrics.batch_size.observe(sum(len(v) for v in fetched.values()))
                for tp, records in fetched.items():
                    for record in records:
                        self._start(tp, record)
            self._raise_failure()
            now = time.monotonic()
            # commit at most this often while running (always at drain and before a rebalance): each commit is
            # a broker round trip the loop waits for; a crash redelivers at most this much more, skipped as recorded
            if now - self._last_commit >= self.cfg.commit_interval_s:
                self._last_commit = now
                await self.commit()
        await self.drain()

    async def drain(self) -> None:
        if self._tasks:
            log.info("draining %d requests in flight", len(self._tasks))
            await asyncio.wait(set(self._tasks))
        self._raise_failure()
        await self.commit()

    def _start(self, tp: TopicPartition, record: Record) -> None:
        self.tracker.begin(tp, record.offset)
        self.metrics.consumed(record.topic)
        task = asyncio.create_task(self._handle(tp, record))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _pause(self, pause: bool) -> None:
        if pause == self._paused:
            return
        parts = self.consumer.assignment()
        if pause:
            self.consumer.pause(*parts)
        else:
            self.consumer.resume(*parts)
        self._paused = pause

    async def commit(self) -> None:
        offsets = self.tracker.committable()
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
            self.tracker.mark_committed(offsets)
            self.metrics.committed(offsets)
        except CommitFailedError as exc:
            log.warning("commit of %s failed after a rebalance: %s", sorted(offsets), exc)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("commit of %s failed (%s); retrying on the next round", sorted(offsets), exc)

    async def _handle(self, tp: TopicPartition, record: Record) -> None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            msg = RoutedMessage.model_validate_json(record.value or b"")
        except ValidationError as exc:
            log.warning("dead-lettering %s: not a routed message", where)
            await self._dead(record, f"invalid routed message: {exc.errors()[0]['msg']}", exc, None, None)
            self.tracker.done(tp, record.offset)
            return
        prompt, route = msg.prompt, msg.route
        if await self.store.is_done(prompt.job_id, prompt.request_id):
            self.stats.duplicates += 1
            self.metrics.skipped_duplicate(route.route)
            log.debug("%s: request already recorded, skipping", where)
            self.tracker.done(tp, record.offset)
            return
        family = family_for(route.model, self.cfg.families, self.cfg.default_family)
        body = prompt.body.model_dump(exclude_none=True)
        payload = build_request(body, route.model, family, route.use_reasoning, route.reasoning_effort)
        threshold = self._escalation_threshold(msg)
        if threshold is not None:
            payload.setdefault("logprobs", True)
        try:
            completion = await self.llm.complete(self.s.llm_url(route.route, route.model), payload)
            self.crash.hit("after_llm")
            result = completed(msg, completion)
            if threshold is not None and await self._escalated(record, msg, result, completion, threshold):
                self.tracker.done(tp, record.offset)
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
        self.tracker.done(tp, record.offset)

    def _escalation_threshold(self, msg: RoutedMessage) -> float | None:
        """The threshold when this message's answer may be escalated: direct route, first attempt."""
        if self.cfg.escalate_below is None or msg.route.route != "direct" or msg.previous_attempt is not None:
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


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move: finish the requests in flight and commit, so the next owner starts clean."""

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self.worker._tasks:
            await asyncio.wait(set(self.worker._tasks))
        await self.worker.commit()
        self.worker.tracker.forget(set(revoked))
        self.worker.metrics.forget(revoked)
        self.worker._paused = False

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("inference assigned %s", sorted(assigned))
