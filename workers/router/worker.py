"""The router loop: consume -> micro-batch -> classify -> decide -> publish -> commit, as a pipeline.

Three stages run at once, so the classifier never waits for the broker:

- the fetch loop (``run``) fills the batcher and dispatches batches to the classifier: when one is full, when
  its oldest prompt waited ``batch_wait_s``, or at once while the classifier has a free slot (self-clocking:
  small batches and low latency under light load, full batches under a backlog); at most ``depth`` batches
  are classified at a time, and at most ``max_pending`` records are held between fetch and commit;
- the publisher takes classified batches in dispatch order and hands each message to the producer (one
  producer batch per topic partition, no await per message);
- the committer waits for the broker's acks (acks=all) of each published batch, in order, and commits the
  offsets of every batch acked so far in one commit.

Offsets are committed only after the broker acknowledged every publish of their batch and of every earlier
batch, so a crash re-routes what was not committed (at least once); downstream writes are idempotent by
request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import OffsetAndMetadata

from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from workers.classifier.model import Classifier
from workers.router.batcher import Batcher
from workers.router.intake import Record, parse
from workers.router.policy import Policy
from workers.router.text import prompt_text
from workers.runtime.crashpoints import CrashPoints
from workers.runtime.metrics import WorkerMetrics
from workers.settings import Settings

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.2
_PARTITIONER = DefaultPartitioner()  # what make_producer's producers use for keyed sends

Routed = list[tuple[Record, RoutedMessage]]


@dataclass
class RouterStats:
    batches: int = 0
    routed: dict[str, int] = field(default_factory=lambda: {"reasoning": 0, "direct": 0})
    dead: int = 0


@dataclass
class _Batch:
    records: list[Record]
    dead: list[tuple[Record, DeadLetter]]
    size: int  # prompts being classified
    routed: asyncio.Future[Routed]
    acks: list[asyncio.Future[object]] = field(default_factory=list)


class RouterWorker:
    def __init__(
        self,
        s: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        classifier: Classifier,
        policy: Policy,
        clock: Callable[[], float] = time.monotonic,
        crash: CrashPoints | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.s = s
        self.cfg = cfg = s.router
        self.metrics = metrics or WorkerMetrics("router", "")
        self.crash = crash or CrashPoints()
        self.consumer = consumer
        self.producer = producer
        self.classifier = classifier
        self.policy = policy
        self.batcher: Batcher[Record] = Batcher(cfg.batch_max, cfg.batch_wait_s, clock)
        self.stats = RouterStats()
        self.max_pending = cfg.pending_limit
        self._to_publish: deque[_Batch] = deque()  # dispatched, in order
        self._to_commit: deque[_Batch] = deque()  # published, in order
        self._pending = 0  # records dispatched and not yet committed
        self._classifying = 0  # prompts being classified
        self._batches_classifying = 0
        self._hold = False  # set while partitions are revoked: nothing new is dispatched
        self._progress = asyncio.Event()  # something moved: a batch classified, published or committed
        self._stages: list[asyncio.Task[None]] = []

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _DrainOnRevoke(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Route until ``stop`` is set, then flush what was fetched and return (the caller closes clients)."""
        self._stages = [asyncio.create_task(self._publisher()), asyncio.create_task(self._committer())]
        try:
            while not stop.is_set():
                self._raise_failure()
                room = self.max_pending - self._pending - len(self.batcher)
                if room <= 0 or self._blocked():
                    # backpressure: nothing more is taken (the fetcher's own buffer is bounded) until a
                    # classification, publish or commit frees room
                    await self._wait_progress(IDLE_POLL_S)
                    continue
                wait = self.batcher.time_left()
                timeout_ms = int(1000 * (IDLE_POLL_S if wait is None else wait))
                fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=min(room, self.cfg.batch_max))
                for records in fetched.values():
                    self.batcher.extend(records)
                self._dispatch()
            self._dispatch(flush=True)
            await self.settle()
        finally:
            for task in self._stages:
                task.cancel()
            await asyncio.gather(*self._stages, return_exceptions=True)

    async def settle(self) -> None:
        """Wait until everything dispatched is published, acked and committed; raise a stage's failure."""
        while self._pending:
            self._raise_failure()
            await self._wait_progress(IDLE_POLL_S)
        self._raise_failure()

    def _blocked(self) -> bool:
        """A batch is due but the classifier takes no more now: wait for it instead of polling the broker."""
        return self.batcher.ready() and (self._hold or self._batches_classifying >= self.cfg.depth)

    def _dispatch(self, flush: bool = False) -> None:
        """Hand due batches to the classifier (called after a fetch and whenever a classification ends)."""
        while len(self.batcher) and not self._hold:
            if not flush:
                if self._batches_classifying >= self.cfg.depth:
                    return
                if not self.batcher.ready(idle=self._classifying < self.classifier.parallelism):
                    return
            self._start(self.batcher.take())

    def _start(self, records: list[Record]) -> None:
        prompts, dead = parse(records, self.s.max_prompt_chars, self.s.max_tokens)
        self.metrics.batch_size.observe(len(records))
        for topic, n in Counter(r.topic for r in records).items():
            self.metrics.consumed(topic, n)
        routed: asyncio.Future[Routed]
        if prompts:
            routed = asyncio.ensure_future(self._classify(prompts))
            self._classifying += len(prompts)
            self._batches_classifying += 1
        else:
            routed = asyncio.get_running_loop().create_future()
            routed.set_result([])
        batch = _Batch(records, dead, len(prompts), routed)
        routed.add_done_callback(lambda _: self._classified(batch))
        self._pending += len(records)
        self._to_publish.append(batch)
        self._progress.set()

    def _classified(self, batch: _Batch) -> None:
        if batch.size:
            self._classifying -= batch.size
            self._batches_classifying -= 1
        self._progress.set()
        self._dispatch()

    async def _publisher(self) -> None:
        while True:
            if not self._to_publish:
                await self._wait_progress(None)
                continue
            batch = self._to_publish[0]
            routed = await batch.routed  # the classifier's failure ends the worker: nothing of it is committed
            self.crash.hit("after_classify")
            batch.acks = await self._publish(routed, batch.dead)
            self._to_publish.popleft()
            self._to_commit.append(batch)
            self._progress.set()

    async def _committer(self) -> None:
        while True:
            if not self._to_commit:
                await self._wait_progress(None)
                continue
            done: list[_Batch] = []
            while self._to_commit:  # every batch published so far, in order: one commit for all of them
                batch = self._to_commit.popleft()
                await asyncio.gather(*batch.acks)  # raises if the broker did not take them: nothing is committed
                self.crash.hit("after_publish")
                done.append(batch)
            await self._commit([r for b in done for r in b.records])
            self.stats.batches += len(done)
            self._pending -= sum(len(b.records) for b in done)
            self._progress.set()

    async def _wait_progress(self, timeout_s: float | None) -> None:
        self._progress.clear()
        try:
            await asyncio.wait_for(self._progress.wait(), timeout_s)
        except TimeoutError:
            pass

    def _raise_failure(self) -> None:
        for task in self._stages:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _publish(self, routed: Routed, dead: list[tuple[Record, DeadLetter]]) -> list[asyncio.Future[object]]:
        """Enqueue every message of the batch, one producer batch per topic partition (no await per message)."""
        out: dict[str, list[tuple[bytes | None, bytes]]] = {}
        t = self.s.topics
        for record, msg in routed:
            topic = t.for_route(msg.route.route)
            out.setdefault(topic, []).append((record.key, msg.model_dump_json().encode()))
            self.stats.routed[msg.route.route] += 1
            self.metrics.decided(msg.route)
        for record, letter in dead:
            out.setdefault(t.dead, []).append((record.key, letter.model_dump_json().encode()))
            self.stats.dead += 1
            self.metrics.dead_letter(t.dead)
        acks: list[asyncio.Future[object]] = []
        for topic, items in out.items():
            acks += await self._send_keyed(topic, items)
            if topic != t.dead:
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

    async def _classify(self, prompts: list[tuple[Record, PromptMessage]]) -> Routed:
        texts = [prompt_text(p.body) for _, p in prompts]
        with self.metrics.classifier_latency.time():
            classes = await asyncio.to_thread(self.classifier.classify, texts)
        now = time.time()
        out = []
        for (record, prompt), c in zip(prompts, classes, strict=True):
            decision = self.policy.decide(c, prompt.body.model, self.s.default_model, self.classifier.version)
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
    """Before partitions move: dispatch nothing new, finish every batch in flight (classified, published, acked,
    committed), drop what is buffered for revoked partitions."""

    def __init__(self, worker: RouterWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        w = self.worker
        w._hold = True
        try:
            while w._pending and not any(t.done() for t in w._stages):
                await w._wait_progress(IDLE_POLL_S)  # a stage's failure, if any, is raised by the loop
            w.metrics.forget(revoked)
            dropped = w.batcher.discard(lambda r: TopicPartition(r.topic, r.partition) not in revoked)
        finally:
            w._hold = False
        if dropped:
            log.info("partitions %s revoked: %d buffered prompts left for their next owner", sorted(revoked), dropped)
        w._dispatch()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("router assigned %s", sorted(assigned))
