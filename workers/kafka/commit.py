"""Committing offsets, for both workers: what may be committed, when, how, and the drain before a rebalance.

A `Checkpoint` (Quix Streams' word) owns one consumer's offsets: each message is begun when fetched and done
when its worker finished with it (`workers.kafka.offsets.OffsetTracker`: a message in flight holds back every
later one of its partition). ``commit`` commits what is done, of the partitions still assigned, at most every
``interval_s`` through ``commit_due`` and at once through ``commit``. A commit that fails after a rebalance
(CommitFailedError) or while the broker is briefly away (a retriable KafkaError) is logged and left for the
next commit, which covers the same partitions: whatever stays uncommitted is redelivered to this worker or
the next owner, and the sinks deduplicate by request id. Any other Kafka error is raised (the worker stops).

`DrainOnRevoke` is the rebalance listener of both workers: before partitions move, the worker finishes what
it has in flight (its ``quiesce``), the checkpoint commits it, and the revoked partitions are forgotten, so
the next owner starts where this worker stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from workers.kafka.offsets import OffsetTracker

log = logging.getLogger(__name__)

OnCommit = Callable[[Mapping[TopicPartition, int]], None]  # e.g. WorkerMetrics.committed
OnForget = Callable[[Iterable[TopicPartition]], None]  # e.g. WorkerMetrics.forget


class Checkpoint:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        interval_s: float = 0.0,
        on_commit: OnCommit | None = None,
        on_forget: OnForget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self.offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._on_commit = on_commit
        self._on_forget = on_forget
        self._clock = clock
        self._last = -float("inf")  # when the last commit was attempted

    def begin(self, tp: TopicPartition, offset: int) -> None:
        """A message was fetched: nothing from it on is committed before it is done."""
        self.offsets.begin(tp, offset)

    def done(self, tp: TopicPartition, offset: int) -> None:
        self.offsets.done(tp, offset)

    @contextmanager
    def finishing(self, tp: TopicPartition, offset: int) -> Iterator[None]:
        """A message handler's one exit: the message is done when the block ends, by falling off its end or by
        returning; an exception leaves it in flight, so nothing from it on is committed."""
        yield
        self.offsets.done(tp, offset)

    async def commit_due(self) -> None:
        """Commit if ``interval_s`` passed since the last commit (each one is a broker round trip)."""
        if self._clock() - self._last >= self.interval_s:
            await self.commit()

    async def commit(self) -> None:
        """Commit every done offset of the assigned partitions now (only partitions that moved)."""
        self._last = self._clock()
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self.offsets.committable().items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except CommitFailedError as exc:
            # the group rebalanced under us: the new owner redelivers these; the sinks deduplicate
            log.warning("commit of %s failed after a rebalance: %s", sorted(offsets), exc)
            return
        except KafkaError as exc:
            if not exc.retriable:
                raise
            log.warning("commit of %s failed (%s); the next commit retries it", sorted(offsets), exc)
            return
        self.offsets.mark_committed(offsets)
        if self._on_commit is not None:
            self._on_commit(offsets)

    def forget(self, parts: Iterable[TopicPartition]) -> None:
        """Drop what is known of partitions this worker no longer owns."""
        parts = set(parts)
        self.offsets.forget(parts)
        if self._on_forget is not None:
            self._on_forget(parts)


class DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move: ``drain`` (the worker finishes everything in flight), commit, forget them."""

    def __init__(
        self, name: str, checkpoint: Checkpoint, drain: Callable[[set[TopicPartition]], Awaitable[object]]
    ) -> None:
        self.name = name
        self.checkpoint = checkpoint
        self.drain = drain

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        revoked = set(revoked)
        await self.drain(revoked)
        await self.checkpoint.commit()
        self.checkpoint.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s assigned %s", self.name, sorted(assigned))
