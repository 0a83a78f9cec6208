"""Wiring: the router's stages overlap (the next batch is classified while the broker acks the last one),
batches are dispatched at once while the classifier has a free slot and grow while it is busy, never more
than ``depth`` are classified at a time, and offsets are committed only after the acks, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from tests.fakes import FakeConsumer
from tests.helpers import until
from workers.classifier.model import Classification
from workers.router.policy import load_policy
from workers.router.worker import RouterWorker
from workers.settings import RouterSettings, Settings, Topics

TOPIC = "prompts"
PARTS = (0, 1)
LABELS = ["law", "math"]
ASSIGNED = [TopicPartition(TOPIC, p) for p in PARTS]


def record(partition: int, offset: int, value: bytes | None = None) -> ConsumerRecord[bytes, bytes]:
    if value is None:
        prompt = PromptMessage(
            request_id=f"j/{partition}/{offset}",
            job_id="j",
            custom_id=f"{partition}/{offset}",
            line=offset + 1,
            body=ChatBody(messages=[ChatMessage(role="user", content=f"math question {offset}")]),
            submitted_at=time.time(),
        )
        value = prompt.model_dump_json().encode()
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k%d" % offset, value, None, 1, len(value), [])


class GatedProducer:
    """Acks only when the test says so (``release``); keeps what was sent per topic, and the keys."""

    def __init__(self) -> None:
        self.sent: dict[str, list[bytes]] = {}
        self.keys: dict[str, list[bytes | None]] = {}
        self.acks: list[asyncio.Future[object]] = []
        self.open = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[object]:
        self.sent.setdefault(topic, []).append(value)
        self.keys.setdefault(topic, []).append(key)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.open:
            fut.set_result(None)
        self.acks.append(fut)
        return fut

    def release(self) -> None:
        self.open = True
        for f in self.acks:
            if not f.done():
                f.set_result(None)


class GatedClassifier:
    """Two 'threads' of parallelism; each classify call blocks until the test lets one through."""

    version = "test"
    labels = LABELS
    parallelism = 2

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.running = 0
        self.max_running = 0
        self.gate = threading.Semaphore(0)
        self._lock = threading.Lock()

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        with self._lock:
            self.calls.append(len(texts))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.gate.acquire()
        with self._lock:
            self.running -= 1
        return [Classification("math", 0.99, False, 8, 0.99) for _ in texts]


def settings(**router: Any) -> Settings:
    topics = Topics(prompts=TOPIC, reasoning="reasoning", direct="direct", dead="dead")
    return Settings(topics=topics, router=RouterSettings(**router))


async def test_stages_overlap_batches_self_clock_and_commits_follow_acks() -> None:
    consumer, producer, clf = FakeConsumer(assignment=ASSIGNED), GatedProducer(), GatedClassifier()
    s = settings(batch_max=8, batch_wait_ms=10_000, depth=2)
    worker = RouterWorker(s, cast(Any, consumer), cast(Any, producer), cast(Any, clf), load_policy())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    # light load: one prompt is classified at once (a free slot), not after the 10 s batch wait
    consumer.feed([record(0, 0)])
    await until(lambda: clf.calls == [1])
    # a second one too (the second slot), while the first is still being classified
    consumer.feed([record(1, 0)])
    await until(lambda: clf.calls == [1, 1])
    # both slots busy: what comes now waits and is dispatched together when a slot frees
    consumer.feed([record(0, o) for o in range(1, 6)] + [record(1, 1)])
    await asyncio.sleep(0.05)
    assert clf.calls == [1, 1] and len(worker.batcher) == 6
    clf.gate.release()
    await until(lambda: clf.calls == [1, 1, 6])
    assert clf.max_running <= s.router.depth

    # the first batch is published, but nothing is committed before the broker acks it
    await until(lambda: len(producer.sent.get("reasoning", [])) >= 1)
    assert consumer.commits == []

    # a bad record goes to the dead-letter topic, in its own place in the order
    consumer.feed([record(0, 6, b"{not json"), record(0, 7)])
    for _ in range(3):
        clf.gate.release()
    await until(lambda: len(worker.batcher) == 0 and len(clf.calls) == 4)
    clf.gate.release()
    await until(lambda: "dead" in producer.sent and len(producer.sent["reasoning"]) == 9)
    assert consumer.commits == []  # every batch is published, none acked yet

    producer.release()
    await until(lambda: bool(consumer.commits) and consumer.by_partition()[-1] == {0: 8, 1: 2})
    stop.set()
    await task

    routed = [RoutedMessage.model_validate_json(v) for v in producer.sent["reasoning"]]
    assert sorted(m.prompt.request_id for m in routed) == sorted(
        [f"j/0/{o}" for o in (0, 1, 2, 3, 4, 5, 7)] + ["j/1/0", "j/1/1"]
    )
    assert all(m.route.category == "math" and m.route.use_reasoning for m in routed)
    # keyed by the prompt's own key (the producer's partitioner picks the partition)
    assert sorted(producer.keys["reasoning"]) == sorted(b"k%d" % o for o in (0, 1, 2, 3, 4, 5, 7, 0, 1))
    letter = DeadLetter.model_validate_json(producer.sent["dead"][0])
    assert (letter.partition, letter.offset, letter.stage) == (0, 6, "router")
    # commits only move forward, per partition
    for p in PARTS:
        seen = [c[p] for c in consumer.by_partition() if p in c]
        assert seen == sorted(seen)
    assert worker.stats.routed == {"reasoning": 9, "direct": 0} and worker.stats.dead == 1


async def test_backlog_fills_batches_and_bounds_what_is_held() -> None:
    consumer, producer, clf = FakeConsumer(assignment=ASSIGNED), GatedProducer(), GatedClassifier()
    producer.open = True
    s = settings(batch_max=4, batch_wait_ms=10_000, depth=2, max_pending=10)
    worker = RouterWorker(s, cast(Any, consumer), cast(Any, producer), cast(Any, clf), load_policy())
    consumer.feed([record(0, o) for o in range(40)])
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await until(lambda: len(clf.calls) == 2)
    await asyncio.sleep(0.05)
    # two batches classified, nothing more taken than max_pending allows (fetched = dispatched + buffered)
    assert clf.calls[0] == 4
    assert 40 - len(consumer.buffer) <= s.router.max_pending
    for _ in range(40):
        clf.gate.release()
    await until(lambda: bool(consumer.commits) and consumer.by_partition()[-1] == {0: 40})
    stop.set()
    await task
    assert sum(clf.calls) == 40 and clf.max_running <= 2
    assert max(clf.calls) == 4  # under a backlog batches are full
    assert len(producer.sent["reasoning"]) == 40


@pytest.mark.timeout(60)  # a fetcher that never yields blocks the loop, and the test's own timeouts with it
async def test_a_partial_batch_goes_when_its_wait_is_over_while_the_classifier_is_busy() -> None:
    consumer, producer, clf = FakeConsumer(assignment=ASSIGNED), GatedProducer(), GatedClassifier()
    producer.open = True
    s = settings(batch_max=8, batch_wait_ms=30, depth=2)
    worker = RouterWorker(s, cast(Any, consumer), cast(Any, producer), cast(Any, clf), load_policy())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    consumer.feed([record(0, 0), record(0, 1)])
    await until(lambda: clf.calls == [2])  # both classifier threads busy with one batch; a second slot is free
    consumer.feed([record(0, 2)])
    await until(lambda: len(worker.batcher) == 1)
    # not full and no idle thread: it waits out its 30 ms, then takes the free slot
    await until(lambda: clf.calls == [2, 1])
    clf.gate.release()
    clf.gate.release()
    await until(lambda: consumer.by_partition()[-1:] == [{0: 3}])
    stop.set()
    await task


async def test_quiesce_drains_what_is_in_flight_then_drops_what_is_buffered_for_revoked_partitions() -> None:
    consumer, producer, clf = FakeConsumer(assignment=ASSIGNED), GatedProducer(), GatedClassifier()
    s = settings(batch_max=4, batch_wait_ms=10_000, depth=1)
    worker = RouterWorker(s, cast(Any, consumer), cast(Any, producer), cast(Any, clf), load_policy())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    consumer.feed([record(0, 0)])
    await until(lambda: clf.calls == [1])
    consumer.feed([record(0, 1), record(1, 0)])  # the only batch slot is busy: these wait in the batcher
    await until(lambda: len(worker.batcher) == 2)

    revoke = asyncio.create_task(worker.rebalance_listener().on_partitions_revoked({ASSIGNED[0]}))
    clf.gate.release()
    await until(lambda: len(producer.sent.get("reasoning", [])) == 1)
    assert not revoke.done() and consumer.commits == []  # published, not acked: the drain goes on
    assert clf.calls == [1]  # nothing new is dispatched meanwhile
    producer.release()
    await asyncio.wait_for(revoke, 10)
    assert consumer.by_partition() == [{0: 1}]

    # partition 0's buffered prompt is left for its next owner; partition 1's is routed here
    await until(lambda: clf.calls == [1, 1])
    clf.gate.release()
    await until(lambda: consumer.by_partition()[-1:] == [{1: 1}])
    stop.set()
    await task
    ids = [RoutedMessage.model_validate_json(v).prompt.request_id for v in producer.sent["reasoning"]]
    assert ids == ["j/0/0", "j/1/0"] and worker.stats.batches == 2


class BrokenClassifier(GatedClassifier):
    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        raise RuntimeError("classifier broke")


async def test_a_failing_stage_cancels_the_others_and_nothing_of_it_is_committed() -> None:
    consumer, producer, clf = FakeConsumer(assignment=ASSIGNED), GatedProducer(), BrokenClassifier()
    producer.open = True
    s = settings(batch_max=4, batch_wait_ms=10_000, depth=2)
    worker = RouterWorker(s, cast(Any, consumer), cast(Any, producer), cast(Any, clf), load_policy())
    consumer.feed([record(0, 6, b"{not json"), record(0, 7)])
    try:
        await asyncio.wait_for(worker.run(asyncio.Event()), 10)  # never stopped: the failure ends it
    except RuntimeError as exc:
        assert str(exc) == "classifier broke"
    else:
        raise AssertionError("run did not raise the classifier's error")
    assert consumer.commits == [] and producer.sent == {}
