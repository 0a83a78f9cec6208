from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, GroupAuthorizationFailedError, KafkaError, RequestTimedOutError
from aiokafka.structs import OffsetAndMetadata

from workers.kafka.commit import Checkpoint
from workers.kafka.offsets import OffsetTracker


def test_commit_waits_for_the_oldest_in_flight() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for o in (10, 11, 12):
        t.begin("p0", o)
    t.done("p0", 11)
    t.done("p0", 12)
    assert t.committable() == {}  # 10 still in flight: nothing past it (10 is where we started)
    t.done("p0", 10)
    assert t.committable() == {"p0": 13}
    t.mark_committed({"p0": 13})
    assert t.committable() == {}
    assert t.in_flight() == 0


def test_partitions_are_independent_and_forgettable() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.begin("a", 0)
    t.begin("b", 5)
    t.done("b", 5)
    assert t.committable() == {"b": 6}
    t.mark_committed({"b": 6})
    assert t.in_flight("a") == 1 and t.in_flight("b") == 0
    t.forget({"a"})
    assert t.committable() == {}


class Consumer:
    """Commits what it is given, or raises the next of ``errors``; a fixed assignment."""

    def __init__(self, assigned: set[TopicPartition], errors: list[Exception] | None = None) -> None:
        self.assigned = assigned
        self.errors = errors or []
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.commits.append({tp: o.offset for tp, o in offsets.items()})


A, B, GONE = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("t", 2)


async def test_checkpoint_commits_done_offsets_of_assigned_partitions_only() -> None:
    consumer = Consumer({A, B})
    seen: list[dict[TopicPartition, int]] = []
    cp = Checkpoint(cast(Any, consumer), on_commit=lambda o: seen.append(dict(o)))
    for tp in (A, B, GONE):
        cp.begin(tp, 0)
        cp.begin(tp, 1)
    with cp.finishing(A, 0):
        pass
    cp.done(GONE, 0)
    cp.done(GONE, 1)
    with pytest.raises(RuntimeError), cp.finishing(B, 0):
        raise RuntimeError("handler failed")  # B@0 stays in flight: nothing of B is committed
    await cp.commit()
    assert consumer.commits == [{A: 1}] and seen == [{A: 1}]
    await cp.commit()  # nothing moved since
    assert len(consumer.commits) == 1


async def test_failed_commits_are_retried_by_the_next_and_fatal_errors_raise() -> None:
    consumer = Consumer({A}, [CommitFailedError("rebalanced"), RequestTimedOutError("broker away")])
    cp = Checkpoint(cast(Any, consumer))
    cp.begin(A, 5)
    cp.done(A, 5)
    await cp.commit()  # after a rebalance: logged
    await cp.commit()  # retriable: logged
    assert consumer.commits == []
    await cp.commit()
    assert consumer.commits == [{A: 6}]
    consumer.errors = [GroupAuthorizationFailedError("not allowed")]  # not retriable
    cp.begin(A, 6)
    cp.done(A, 6)
    with pytest.raises(KafkaError):
        await cp.commit()


async def test_commit_due_waits_for_the_interval_and_forget_drops_a_partition() -> None:
    now = [100.0]
    consumer = Consumer({A})
    forgotten: list[set[TopicPartition]] = []
    cp = Checkpoint(
        cast(Any, consumer), interval_s=1.0, clock=lambda: now[0], on_forget=lambda p: forgotten.append(set(p))
    )
    cp.begin(A, 0)
    cp.done(A, 0)
    await cp.commit_due()
    cp.begin(A, 1)
    cp.done(A, 1)
    now[0] += 0.5
    await cp.commit_due()  # too soon
    assert consumer.commits == [{A: 1}]
    now[0] += 0.5
    await cp.commit_due()
    assert consumer.commits == [{A: 1}, {A: 2}]
    cp.begin(A, 2)
    cp.forget({A})
    assert cp.offsets.in_flight() == 0 and forgotten == [{A}]
