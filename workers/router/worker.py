"""The router loop: consume -> micro-batch -> classify -> decide -> publish -> commit, as a pipeline.

Four stages run at once in one task group (a failing stage cancels the others and ends ``run`` with its
error), in order from one to the next, so the classifier never waits for the broker:

- fetch: records go from the consumer into the batcher while fewer than ``pending_limit`` records are held
  between fetch and commit, and not while a due batch waits for the classifier;
- dispatch: a batch goes to the classifier when it is full, when its oldest prompt waited ``batch_wait_s``,
  or at once while the classifier has a free thread (self-clocking: small batches and low latency under
  light load, full batches under a backlog); at most ``depth`` batches are classified at a time; every batch
  joins the publish queue in dispatch order;
- publish: classified batches, in dispatch order, go to the producer message by message, keyed (no await
  per ack; the producer fills one batch per topic partition);
- commit: waits for the broker's acks (acks=all) of each published batch, in order, and commits every
  batch acked so far in one commit (`workers.kafka.commit.Checkpoint`).

The queues between the stages hold at most ``pending_limit`` batches (each holds a record or more), so the
record budget is what applies backpressure. Offsets are committed only after the broker acknowledged every
publish of their batch and of every earlier batch, so a crash re-routes what was not committed (at least
once); downstream writes are idempotent by request id. Before a rebalance, ``quiesce`` lets everything in
flight through and drops what is buffered for the revoked partitions. A new (policy, classifier) pair from
``watcher`` (`workers.router.pair`) holds dispatch until the batches in flight are decided by the old pair.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from schemas.messages import DeadLetter, PromptMessage
from workers.classifier.model import Classifier
from workers.kafka.commit import Checkpoint, DrainOnRevoke
from workers.router.batcher import Batcher
from workers.router.decide import Routed, needs_embeddings, route_batch
from workers.router.intake import Record, parse
from workers.router.pair import Pair
from workers.router.policy import Policy
from workers.router.reload import PolicyWatcher
from workers.router.text import prompt_text
from workers.runtime.crashpoints import CrashPoints
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.tasks import task_group, wait_event
from workers.settings import Settings

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 200  # longest one fetch waits for records, and so the longest a stop waits for the fetcher


@dataclass
class RouterStats:
    batches: int = 0
    routed: dict[str, int] = field(default_factory=lambda: {"reasoning": 0, "direct": 0})
    shadows: dict[str, int] = field(default_factory=lambda: {"reasoning": 0, "direct": 0})  # exploration copies
    dead: int = 0


@dataclass
class _Batch:
    records: list[Record]
    dead: list[tuple[Record, DeadLetter]]
    routed: asyncio.Future[Routed]  # the classification (a task of the group), or [] when all are dead letters
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
        watcher: PolicyWatcher | None = None,
    ) -> None:
        self.s = s
        self.cfg = s.router
        self.metrics = metrics or WorkerMetrics("router", "")
        self.crash = crash or CrashPoints()
        self.consumer = consumer
        self.producer = producer
        self.pair = Pair(policy, classifier)  # replaced between batches by ``watcher`` (a new policy file)
        self.watcher = watcher
        self.batcher: Batcher[Record] = Batcher(self.cfg.batch_max, self.cfg.batch_wait_s, clock)
        self.checkpoint = Checkpoint(consumer, on_commit=self.metrics.committed, on_forget=self.metrics.forget)
        self.stats = RouterStats()
        limit = self.cfg.pending_limit
        self._to_publish: asyncio.Queue[_Batch | None] = asyncio.Queue(limit)  # dispatched, in order
        self._to_commit: asyncio.Queue[_Batch | None] = asyncio.Queue(limit)  # published, in order
        self._held = 0  # records fetched and not yet committed (in the batcher or dispatched)
        self._classifying = 0  # prompts being classified
        self._batches_classifying = 0
        self._holds = 0  # quiesce calls under way: nothing new is dispatched
        self._running = self._stopping = False
        self._fetching = True
        self._wake_fetch = asyncio.Event()  # room freed, a batch dispatched, stop
        self._wake_dispatch = asyncio.Event()  # records fetched, a classification ended, a hold lifted
        self._wake_quiesce = asyncio.Event()  # a commit, the end of run

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return DrainOnRevoke("router", self.checkpoint, self.quiesce)

    async def run(self, stop: asyncio.Event) -> None:
        """Route until ``stop`` is set, then flush what was fetched and return once it is committed (the
        caller closes the clients); a stage's failure cancels the others and is raised here."""
        self._running = True
        try:
            async with task_group() as tg:
                tg.create_task(self._watch(stop))
                if self.watcher is not None:
                    tg.create_task(self.watcher.run(stop, self._swap))
                tg.create_task(self._fetch())
                tg.create_task(self._dispatch(tg))
                tg.create_task(self._publish())
                tg.create_task(self._commit())
        finally:
            self._running = False
            self._wake_quiesce.set()
            self.pair.discard()

    async def quiesce(self, revoked: Collection[TopicPartition] = ()) -> None:
        """Before partitions move: dispatch nothing new, wait until every batch in flight is classified,
        published, acked and committed, and drop what is buffered for ``revoked`` (its next owner routes it)."""
        self._holds += 1
        try:
            while True:
                self._wake_quiesce.clear()
                if not self._running or self._held == len(self.batcher):  # nothing dispatched is uncommitted
                    break
                await self._wake_quiesce.wait()
            dropped = self.batcher.discard(lambda r: TopicPartition(r.topic, r.partition) not in revoked)
            self._held -= dropped
        finally:
            self._holds -= 1
            self._wake_dispatch.set()
            self._wake_fetch.set()
        if dropped:
            log.info("partitions %s revoked: %d buffered prompts left for their next owner", sorted(revoked), dropped)

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True
        self._wake_fetch.set()

    @property
    def policy(self) -> Policy:
        return self.pair.policy

    @property
    def classifier(self) -> Classifier:
        return self.pair.classifier

    def _swap(self, policy: Policy, classifier: Classifier | None = None) -> None:
        self.pair.offer(policy, classifier)
        self._wake_dispatch.set()

    async def _switch(self) -> None:
        """A waiting pair replaces the one in use once no batch is being classified or decided by it."""
        if self._batches_classifying == 0 and (old := self.pair.switch()) is not None:
            self._wake_fetch.set()
            await asyncio.to_thread(old.close)

    def _blocked(self) -> bool:
        """A batch is due but the classifier takes no more now: wait for it instead of polling the broker."""
        return self.batcher.ready() and (self._holds > 0 or self._busy())

    async def _fetch(self) -> None:
        """Consumer -> batcher, within the record budget, until stop."""
        try:
            while True:
                self._wake_fetch.clear()
                if self._stopping:
                    return
                room = self.cfg.pending_limit - self._held
                if room <= 0 or self._blocked():
                    # backpressure: nothing more is taken (the consumer's own buffer is bounded) until a
                    # dispatch or a commit frees room
                    await self._wake_fetch.wait()
                    continue
                # never timeout 0: aiokafka's getmany then returns without yielding, and the stages that
                # would free room or take the due batch never run
                fetched = await self.consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=min(room, self.cfg.batch_max)
                )
                for records in fetched.values():
                    self.batcher.extend(records)
                    self._held += len(records)
                if fetched:
                    self._wake_dispatch.set()
        finally:
            self._fetching = False
            self._wake_dispatch.set()

    def _busy(self) -> bool:
        return self.pair.pending is not None or self._batches_classifying >= self.cfg.depth

    def _due(self) -> bool:
        if self._holds or self._busy():
            return False
        return self.batcher.ready(idle=self._classifying < self.classifier.parallelism)

    async def _dispatch(self, tg: asyncio.TaskGroup) -> None:
        """Batcher -> classifier -> publish queue; once fetching stopped, the rest is flushed."""
        while self._fetching:
            self._wake_dispatch.clear()
            await self._switch()
            while self._due():
                await self._start(tg, self.batcher.take())
            busy = self._holds or self._busy()
            await wait_event(self._wake_dispatch, None if busy else self.batcher.time_left())
        while len(self.batcher) and not self._holds:
            await self._start(tg, self.batcher.take())
        await self._to_publish.put(None)

    async def _start(self, tg: asyncio.TaskGroup, records: list[Record]) -> None:
        prompts, dead = parse(records, self.s.max_prompt_chars, self.s.max_tokens)
        self.metrics.batch_size.observe(len(records))
        for topic, n in Counter(r.topic for r in records).items():
            self.metrics.consumed(topic, n)
        for r in records:
            self.checkpoint.begin(TopicPartition(r.topic, r.partition), r.offset)
        routed: asyncio.Future[Routed]
        if prompts:
            self._classifying += len(prompts)
            self._batches_classifying += 1
            routed = tg.create_task(self._classify_batch(prompts))
        else:
            routed = asyncio.get_running_loop().create_future()
            routed.set_result([])
        self._wake_fetch.set()  # the due batch is gone: fetching may go on
        await self._to_publish.put(_Batch(records, dead, routed))

    async def _classify_batch(self, prompts: list[tuple[Record, PromptMessage]]) -> Routed:
        try:
            return await self._classify(prompts)
        finally:
            self._classifying -= len(prompts)
            self._batches_classifying -= 1
            self._wake_dispatch.set()

    async def _classify(self, prompts: list[tuple[Record, PromptMessage]]) -> Routed:
        texts = [prompt_text(p.body) for _, p in prompts]
        classifier = self.classifier  # the same until this batch is decided (a new pair waits for it)
        embeddings = needs_embeddings(self.policy)  # a gain head on embeddings: every prompt through the encoder
        while True:
            with self.metrics.classifier_latency.time():
                classes = await asyncio.to_thread(classifier.classify, texts, embeddings)
            # one policy per batch, read when its decisions are made (no await from here to the last one), so in
            # routing order (routed_at) no decision of an old version follows one of its replacement
            policy = self.policy
            if embeddings or not needs_embeddings(policy):
                break
            embeddings = True  # swapped to a policy reading embeddings during this batch (rare): once more
        return route_batch(prompts, classes, policy, classifier.version, self.s.default_model, time.time())

    async def _publish(self) -> None:
        """Classified batches, in dispatch order -> producer -> commit queue."""
        while (batch := await self._to_publish.get()) is not None:
            routed = await batch.routed  # the classifier's failure ends the worker: nothing of it is committed
            self.crash.hit("after_classify")
            batch.acks = await self._send(routed, batch.dead)
            await self._to_commit.put(batch)
        await self._to_commit.put(None)

    async def _send(self, routed: Routed, dead: list[tuple[Record, DeadLetter]]) -> list[asyncio.Future[object]]:
        """Every message of the batch to the producer, keyed: no await per ack. ``producer.send`` rather than
        partitioning here and one ``send_batch`` per partition: 2.1-3.5x the messages/s, half the broker CPU,
        the same client CPU (20,000 messages of 2 KB, ``python -m loadgen.keyed_send``). An exploration shadow
        goes to its own route's topic, keyed the same; its ack gates the commit like the routed one's, and it is
        counted as ``shadows`` only (never in the routed stats or decision metrics)."""
        t = self.s.topics
        acks: list[asyncio.Future[object]] = []
        sent: Counter[str] = Counter()
        for record, msg in routed:
            topic = t.for_route(msg.route.route)
            acks.append(await self.producer.send(topic, msg.model_dump_json().encode(), key=record.key))
            sent[topic] += 1
            if msg.shadow:
                self.stats.shadows[msg.route.route] += 1
                continue
            self.stats.routed[msg.route.route] += 1
            self.metrics.decided(msg.route)
        for record, letter in dead:
            acks.append(await self.producer.send(t.dead, letter.model_dump_json().encode(), key=record.key))
            self.stats.dead += 1
            self.metrics.dead_letter(t.dead)
        for topic, n in sent.items():
            self.metrics.produced(topic, n)
        return acks

    async def _commit(self) -> None:
        """Published batches, in order: await their acks, then one commit for every batch acked so far."""
        while True:
            batch = await self._to_commit.get()
            acked: list[_Batch] = []
            while batch is not None:
                await asyncio.gather(*batch.acks)  # raises if the broker did not take them: nothing is committed
                self.crash.hit("after_publish")
                acked.append(batch)
                if self._to_commit.empty():
                    break
                batch = self._to_commit.get_nowait()
            if acked:
                for r in (r for b in acked for r in b.records):
                    self.checkpoint.done(TopicPartition(r.topic, r.partition), r.offset)
                await self.checkpoint.commit()
                self.stats.batches += len(acked)
                self._held -= sum(len(b.records) for b in acked)
                self._wake_fetch.set()
                self._wake_quiesce.set()
            if batch is None:
                return
