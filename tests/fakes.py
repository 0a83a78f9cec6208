"""The one fake Kafka consumer of the unit tests (router pipeline, inference backpressure, metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from workers.runtime.tasks import wait_event

Record = ConsumerRecord[bytes, bytes]


class FakeConsumer:
    """The part of ``AIOKafkaConsumer`` the workers and their metrics use.

    Hands out what the test feeds it, in order, at most ``max_records`` at a time (a fetch with nothing to
    hand out waits up to its timeout for a feed, as a broker holds a fetch, and returns without yielding to
    the event loop when its timeout is 0, as aiokafka's does); records each fetch's
    ``max_records`` (``asked``), pauses, and commits (``commits``: one ``{partition: offset}`` per commit);
    ``highwater`` answers from the given high watermarks. The assignment (``assignment`` and the partitions
    with a high watermark) is fixed.
    """

    def __init__(
        self,
        highwater: Mapping[TopicPartition, int | None] | None = None,
        *,
        assignment: Iterable[TopicPartition] = (),
        records: Iterable[Record] = (),
    ) -> None:
        self.hw = dict(highwater or {})
        self.assigned = set(assignment) | set(self.hw)
        self.buffer: list[Record] = list(records)
        self.asked: list[int] = []
        self.paused: set[TopicPartition] = set()
        self.pauses = 0
        self.commits: list[dict[TopicPartition, int]] = []
        self._fed = asyncio.Event()

    def feed(self, records: Iterable[Record]) -> None:
        self.buffer.extend(records)
        self._fed.set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.hw[tp]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)
        self.pauses += 1

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        assert not self.paused, "fetched while paused"
        self.asked.append(max_records or 0)
        if not self.buffer and timeout_ms > 0:  # as aiokafka's: with no timeout it returns at once, not yielding
            self._fed.clear()
            await wait_event(self._fed, timeout_ms / 1000)
        n = max_records or 1
        take, self.buffer = self.buffer[:n], self.buffer[n:]
        out: dict[TopicPartition, list[Record]] = {}
        for r in take:
            out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def by_partition(self) -> list[dict[int, int]]:
        """The commits as ``{partition: offset}`` (one topic)."""
        return [{tp.partition: o for tp, o in c.items()} for c in self.commits]
