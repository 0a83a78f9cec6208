"""The router loop: consume -> micro-batch -> classify -> decide -> publish -> commit.

Offsets are committed only after the broker acknowledged every publish of the batch, so a crash
between the two re-routes the batch (at least once); downstream writes are idempotent by request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from pydantic import ValidationError

from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from workers.crashpoints import CrashPoints
from workers.deadletter import dead_letter
from workers.metrics import WorkerMetrics
from workers.router.batcher import Batcher
from workers.router.classifier import Classifier
from workers.router.policy import Policy
from workers.router.text import prompt_text

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
IDLE_POLL_S = 0.2
_PARTITIONER = DefaultPartitioner()  # what make_producer's producers use for keyed sends


@dataclass(frozen=True)
class RouterConfig:
    prompts_topic: str
    reasoning_topic: str
    direct_topic: str
    dead_topic: str
    batch_max: int = 64
    batch_wait_s: float = 0.02
    default_model: str = "Qwen/Qwen3-30B-A3B"
    max_prompt_chars: int = 200_000
    max_tokens: int | None = None


@dataclass
class RouterStats:
    batches: int = 0
    routed: dict[str, int] = field(default_factory=lambda: {"reasoning": 0, "direct": 0})
    dead: int = 0


class RouterWorker:
    def __init__(
        self,
        cfg: RouterConfig,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        classifier: Classifier,
        policy: Policy,
        clock: Callable[[], float] = time.monotonic,
        crash: CrashPoints | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or WorkerMetrics("router", "")
        self.crash = crash or CrashPoints()
        self.consumer = consumer
        self.producer = producer
        self.classifier = classifier
        self.policy = policy
        self.batcher: Batcher[Record] = Batcher(cfg.batch_max, cfg.batch_wait_s, clock)
        self.stats = RouterStats()
        self._busy = asyncio.Lock()  # held while a batch is parsed, classified and handed to the producer
        self._inflight: asyncio.Task[None] | None = None  # acks + commit of the last published batch

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _DrainOnRevoke(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Route until ``stop`` is set, then flush what was fetched and return (the caller closes clients).

        A pipeline of depth 2: batch N+1 is classified (in a thread) while batch N's publishes are acked and
        its offsets committed (a task). Batch N+1 publishes only once batch N is committed, so commits stay in
        order per partition and each follows the broker's acks of its own batch.
        """
        while not stop.is_set():
            wait = self.batcher.time_left()
            timeout_ms = int(1000 * (IDLE_POLL_S if wait is None else wait))
            fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.batcher.room() or 1)
            for records in fetched.values():
                self.batcher.extend(records)
            while self.batcher.ready():
                await self.route_batch(self.batcher.take())
            self._raise_failure()
        while len(self.batcher):
            await self.route_batch(self.batcher.take())
        await self.settle()

    async def route_batch(self, records: list[Record]) -> None:
        """Classify ``records`` and publish them; the acks and the commit finish in the background."""
        async with self._busy:
            prompts, dead = self._parse(records)
            self.metrics.batch_size.observe(len(records))
            for topic, n in Counter(r.topic for r in records).items():
                self.metrics.consumed(topic, n)
            routed = await self._classify(prompts) if prompts else []  # the previous batch finishes meanwhile
            self.crash.hit("after_classify")
            await self.settle()  # depth 2: the previous batch is committed before this one publishes
            acks = await self._publish(routed, dead)
            self._inflight = asyncio.create_task(self._finish(records, acks))

    async def settle(self) -> None:
        """Wait until the batch in flight is acked and committed; raise its failure if it failed."""
        task, self._inflight = self._inflight, None
        if task is not None:
            await task

    def _raise_failure(self) -> None:
        task = self._inflight
        if task is not None and task.done():
            self._inflight = None
            task.result()  # raises if the broker did not take the batch: nothing of it was committed

    async def _finish(self, records: list[Record], acks: list[asyncio.Future[object]]) -> None:
        await asyncio.gather(*acks)  # raises if the broker did not take them: nothing is committed
        self.crash.hit("after_publish")
        await self._commit(records)
        self.stats.batches += 1

    async def _publish(
        self, routed: list[tuple[Record, RoutedMessage]], dead: list[tuple[Record, DeadLetter]]
    ) -> list[asyncio.Future[object]]:
        """Enqueue every message of the batch, one producer batch per topic partition (no await per message)."""
        out: dict[str, list[tuple[bytes | None, bytes]]] = {}
        for record, msg in routed:
            topic = self.cfg.reasoning_topic if msg.route.route == "reasoning" else self.cfg.direct_topic
            out.setdefault(topic, []).append((record.key, msg.model_dump_json().encode()))
            self.stats.routed[msg.route.route] += 1
            self.metrics.decided(msg.route)
        for record, letter in dead:
            out.setdefault(self.cfg.dead_topic, []).append((record.key, letter.model_dump_json().encode()))
            self.stats.dead += 1
            self.metrics.dead_letter(self.cfg.dead_topic)
        acks: list[asyncio.Future[object]] = []
        for topic, items in out.items():
            acks += await self._send_keyed(topic, items)
            if topic != self.cfg.dead_topic:
                self.metrics.produced(topic, len(items))
        return acks

    async def _send_keyed(self, topic: str, items: list[tuple[bytes | None, bytes]]) -> list[asyncio.Future[object]]:
        """Partition by key as the producer's default partitioner does, then one ``send_batch`` per batch."""
        parts = sorted(await self.producer.partitions_for(topic))
        by_part: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in items:
            by_part.setdefault(_PARTITIONER(key, parts, parts), []).append((key, value))
        acks: list[asyncio.Future[object]] = []
        for partition, msgs in by_part.items():
            batch = self.producer.create_batch()
            for key, value in msgs:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    acks.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any one message
            acks.append(await self.producer.send_batch(batch, topic, partition=partition))
        return acks

    def _parse(
        self, records: list[Record]
    ) -> tuple[list[tuple[Record, PromptMessage]], list[tuple[Record, DeadLetter]]]:
        good: list[tuple[Record, PromptMessage]] = []
        bad: list[tuple[Record, DeadLetter]] = []
        for record in records:
            try:
                if not record.value:
                    raise ValueError("empty message")
                prompt = PromptMessage.model_validate_json(record.value)
                _check_limits(prompt, self.cfg)
                good.append((record, prompt))
            except (ValidationError, ValueError) as exc:
                reason = _short(exc)
                log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
                bad.append((record, dead_letter("router", record, reason, exc)))
        return good, bad

    async def _classify(self, prompts: list[tuple[Record, PromptMessage]]) -> list[tuple[Record, RoutedMessage]]:
        texts = [prompt_text(p.body) for _, p in prompts]
        with self.metrics.classifier_latency.time():
            classes = await asyncio.to_thread(self.classifier.classify, texts)
        now = time.time()
        out = []
        for (record, prompt), c in zip(prompts, classes, strict=True):
            decision = self.policy.decide(c, prompt.body.model, self.cfg.default_model, self.classifier.version)
            out.append((record, RoutedMessage(prompt=prompt, route=decision, routed_at=now)))
        return out

    async def _commit(self, records: list[Record]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, -1), r.offset + 1)
        assigned = self.consumer.assignment()
        to_commit = {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items() if tp in assigned}
        if not to_commit:
            return
        try:
            await self.consumer.commit(to_commit)
            self.metrics.committed({tp: o.offset for tp, o in to_commit.items()})
        except CommitFailedError as exc:
            # The group rebalanced under us: the new owner re-routes these; the sink deduplicates.
            log.warning("commit of %s failed after a rebalance: %s", sorted(to_commit), exc)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            # The broker is briefly away: a later commit of the same partitions supersedes this one, and
            # whatever stays uncommitted is re-routed after a restart (and deduplicated downstream).
            log.warning("commit of %s failed (%s); it will be superseded", sorted(to_commit), exc)


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move: finish the batches in flight (classified and publishing), drop what is buffered
    for revoked partitions."""

    def __init__(self, worker: RouterWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.worker._busy:
            task = self.worker._inflight
            if task is not None:
                await asyncio.wait([task])  # its failure, if any, is raised by the loop
            self.worker.metrics.forget(revoked)
            dropped = self.worker.batcher.discard(lambda r: TopicPartition(r.topic, r.partition) not in revoked)
        if dropped:
            log.info("partitions %s revoked: %d buffered prompts left for their next owner", sorted(revoked), dropped)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("router assigned %s", sorted(assigned))


def _check_limits(prompt: PromptMessage, cfg: RouterConfig) -> None:
    """The same caps `thinkroute submit` applies, for producers that did not go through it."""
    size = sum(len(m.content) for m in prompt.body.messages)
    if size > cfg.max_prompt_chars:
        raise ValueError(f"prompt of {size} characters is over the limit of {cfg.max_prompt_chars}")
    asked = prompt.body.max_completion_tokens or prompt.body.max_tokens
    if cfg.max_tokens is not None and asked is not None and asked > cfg.max_tokens:
        raise ValueError(f"max_tokens {asked} is over the limit of {cfg.max_tokens}")


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()[:3]
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errs)
    return str(exc)[:500]
