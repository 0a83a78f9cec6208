"""Consumer lag per group, topic and partition, measured the way that is right on Kafka and on Tansu.

End offsets come from the high watermark carried by a Fetch response, never from ListOffsets(latest)
(Tansu answers that with the start of the last record batch plus one): the partitions are assigned to a
group-less consumer, positioned at the committed offsets, fetched once with a small max bytes, and
``consumer.highwater(tp)`` is read. Committed offsets come from OffsetFetch with explicit partitions
(``list_consumer_group_offsets`` without ``partitions=`` breaks on Tansu). A partition with nothing
committed counts from its log start (ListOffsets(earliest), which is right on both), as a new group
with ``auto_offset_reset=earliest`` would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from workers.errors import NotFound, ThinkRouteError
from workers.kafka.security import start_client
from workers.settings import KafkaSettings

log = logging.getLogger(__name__)

PROBE_MAX_BYTES = 1024  # per partition: the fetch is only there for its high watermark


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed this partition
    end: int  # high watermark: offset of the next record to be written
    lag: int


@dataclass(frozen=True)
class GroupLag:
    group: str
    taken_at: float  # unix time of the measurement
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def consumed(self) -> int:
        """Committed offsets summed: grows by one per record the group finishes."""
        return sum(p.end - p.lag for p in self.partitions)

    def by_topic(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.partitions:
            out[p.topic] = out.get(p.topic, 0) + p.lag
        return out


@dataclass(frozen=True)
class Drain:
    rate_per_s: float | None  # records the group committed per second over the window; None: unknown
    eta_s: float | None  # time to drain the current lag at that rate; None: unknown or never (rate 0)


@dataclass
class DrainTracker:
    """Recent measurements of one group; the consumption rate is taken over the last ``window_s``."""

    window_s: float = 60.0
    history: list[GroupLag] = field(default_factory=list)

    def add(self, snapshot: GroupLag) -> Drain:
        self.history.append(snapshot)
        cutoff = snapshot.taken_at - self.window_s
        while len(self.history) > 2 and self.history[1].taken_at <= cutoff:
            self.history.pop(0)
        return estimate_drain(self.history)


def estimate_drain(history: Sequence[GroupLag]) -> Drain:
    """Rate = committed records between the first and last measurement / time between them."""
    if not history:
        return Drain(None, None)
    last = history[-1]
    if last.total == 0:
        return Drain(_rate(history), 0.0)
    rate = _rate(history)
    if rate is None or rate <= 0:
        return Drain(rate, None)
    return Drain(rate, last.total / rate)


def _rate(history: Sequence[GroupLag]) -> float | None:
    first, last = history[0], history[-1]
    dt = last.taken_at - first.taken_at
    if len(history) < 2 or dt <= 0:
        return None
    done = last.consumed - first.consumed
    return done / dt if done >= 0 else None  # negative: offsets were reset; no meaningful rate


async def measure(kc: KafkaSettings, groups: Mapping[str, Sequence[str]], timeout_s: float = 15.0) -> list[GroupLag]:
    """Lag of each group on its topics (``{group: [topic, ...]}``), one admin and one consumer for all."""
    admin = AIOKafkaAdminClient(**kc.client_kwargs(), request_timeout_ms=int(timeout_s * 1000))
    await start_client(admin, kc)
    try:
        consumer = AIOKafkaConsumer(
            **kc.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,  # > 0: Tansu never answers a fetch with 0
            max_partition_fetch_bytes=PROBE_MAX_BYTES,
            fetch_max_bytes=64 * PROBE_MAX_BYTES,
        )
        try:
            await start_client(consumer, kc)
            async with asyncio.timeout(timeout_s):
                return await _measure(admin, consumer, groups)
        except TimeoutError as exc:
            raise ThinkRouteError(f"could not measure lag within {timeout_s:.0f}s (is the broker up?)") from exc
        finally:
            await consumer.stop()
    finally:
        await admin.close()


async def _measure(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, groups: Mapping[str, Sequence[str]]
) -> list[GroupLag]:
    topics = sorted({t for ts in groups.values() for t in ts})
    parts = await _partitions(admin, topics)
    committed: dict[str, dict[TopicPartition, int | None]] = {}
    for group, ts in groups.items():  # one group per call: describing several at once fails (aiokafka)
        tps = [tp for tp in parts if tp.topic in ts]
        got = await admin.list_consumer_group_offsets(group, partitions=tps)
        committed[group] = {tp: (got[tp].offset if tp in got and got[tp].offset >= 0 else None) for tp in tps}
    starts_needed = [tp for tp in parts if any(c.get(tp, 0) is None for c in committed.values())]
    starts = await consumer.beginning_offsets(starts_needed) if starts_needed else {}
    ends = await _high_watermarks(consumer, parts, committed)
    now = time.time()
    out = []
    for group, offsets in committed.items():
        rows = []
        for tp, c in sorted(offsets.items()):
            end = ends[tp]
            base = c if c is not None else starts[tp]
            rows.append(PartitionLag(tp.topic, tp.partition, c, end, max(end - base, 0)))
        out.append(GroupLag(group, now, tuple(rows)))
    return out


async def _partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    existing = set(await admin.list_topics())  # first: describing a missing topic may auto-create it
    missing = [t for t in topics if t not in existing]
    if missing:
        raise NotFound(f"topic(s) {', '.join(missing)} do not exist")
    described = await admin.describe_topics(topics)
    out = []
    for t in described:
        if t["error_code"] != 0 or not t["partitions"]:
            raise ThinkRouteError(f"topic {t['topic']!r}: no partitions (error code {t['error_code']})")
        out += [TopicPartition(t["topic"], p["partition"]) for p in t["partitions"]]
    return sorted(out)


async def _high_watermarks(
    consumer: AIOKafkaConsumer,
    parts: list[TopicPartition],
    committed: Mapping[str, Mapping[TopicPartition, int | None]],
) -> dict[TopicPartition, int]:
    """Fetch each partition once from the furthest committed offset; the response carries its watermark."""
    consumer.assign(parts)
    for tp in parts:
        done = [c[tp] for c in committed.values() if c.get(tp) is not None]
        if done:
            consumer.seek(tp, max(o for o in done if o is not None))
        else:
            await consumer.seek_to_beginning(tp)
    ends: dict[TopicPartition, int] = {}
    while len(ends) < len(parts):
        await consumer.getmany(timeout_ms=100, max_records=1)
        for tp in parts:
            hw = consumer.highwater(tp)
            if hw is not None and tp not in ends:
                ends[tp] = hw
                log.debug("high watermark of %s[%d] is %d", tp.topic, tp.partition, hw)
    return ends
