"""``python -m loadgen.keyed_send``: the router's two ways of publishing keyed messages, side by side.

``batches``: partition by key with the producer's DefaultPartitioner, then ``create_batch`` / ``send_batch``
per topic partition (what the router did up to this release); ``send``: ``AIOKafkaProducer.send(topic,
value, key=key)`` per message. Both publish routed-size messages in router-sized batches to the real Tansu
broker (or ``--bootstrap``) through ``make_producer``, at most ``--in-flight`` batches unacknowledged (the
router's ``max_pending``), interleaved round by round; reported: messages/s and CPU seconds per 1,000
messages of this process and of the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from loadgen.bench_common import cpu_seconds
from workers.kafka.clients import ensure_topics, make_producer
from workers.local.services import start_broker
from workers.settings import Settings

Items = list[tuple[bytes | None, bytes]]
Send = Callable[[AIOKafkaProducer, str, Items], Awaitable[list[asyncio.Future[Any]]]]
_PARTITIONER = DefaultPartitioner()


async def send_batches(producer: AIOKafkaProducer, topic: str, items: Items) -> list[asyncio.Future[Any]]:
    """Partition by key as the producer's default partitioner does, then one ``send_batch`` per batch."""
    parts = sorted(await producer.partitions_for(topic))
    by_part: dict[int, Items] = {}
    for key, value in items:
        by_part.setdefault(_PARTITIONER(key, parts, parts), []).append((key, value))
    acks: list[asyncio.Future[Any]] = []
    for partition, msgs in by_part.items():
        batch = producer.create_batch()
        for key, value in msgs:
            if batch.append(key=key, value=value, timestamp=None) is None:
                acks.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        acks.append(await producer.send_batch(batch, topic, partition=partition))
    return acks


async def send_each(producer: AIOKafkaProducer, topic: str, items: Items) -> list[asyncio.Future[Any]]:
    return [await producer.send(topic, value, key=key) for key, value in items]


WAYS: dict[str, Send] = {"batches": send_batches, "send": send_each}


def messages(n: int, size: int) -> Items:
    pad = "x" * max(size - 120, 0)
    out: Items = []
    for i in range(n):
        rid = f"job-{i // 1000}/{i}"
        value = json.dumps({"prompt": {"request_id": rid, "text": pad}, "route": {"route": "direct"}}).encode()
        out.append((rid.encode(), value))
    return out


async def one_run(
    producer: AIOKafkaProducer, topic: str, send: Send, items: Items, batch: int, in_flight: int, broker_pid: int
) -> dict[str, float]:
    pending: list[list[asyncio.Future[Any]]] = []
    cpu0, broker0, t0 = time.process_time(), cpu_seconds(broker_pid), time.perf_counter()
    for i in range(0, len(items), batch):
        pending.append(await send(producer, topic, items[i : i + batch]))
        if len(pending) > in_flight:
            await asyncio.gather(*pending.pop(0))
    for acks in pending:
        await asyncio.gather(*acks)
    wall = time.perf_counter() - t0
    per_k = 1000 / len(items)
    return {
        "msgs_per_s": round(len(items) / wall, 1),
        "cpu_s_per_1000": round((time.process_time() - cpu0) * per_k, 4),
        "broker_cpu_s_per_1000": round((cpu_seconds(broker_pid) - broker0) * per_k, 4),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    broker = start_broker(Path(tempfile.mkdtemp(prefix="keyed-send-")))
    try:
        kc = Settings(kafka_bootstrap=broker.address).kafka_settings()
        topic = f"keyed-{uuid.uuid4().hex[:8]}"
        await ensure_topics(kc, [topic], args.partitions)
        producer = make_producer(kc)
        await producer.start()
        try:
            items = messages(args.messages, args.size)
            await one_run(producer, topic, send_each, items[:2000], args.batch, args.in_flight, broker.proc.pid)
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in WAYS}
            for r in range(args.rounds):
                order = list(WAYS) if r % 2 == 0 else list(reversed(WAYS))
                for name in order:
                    row = await one_run(producer, topic, WAYS[name], items, args.batch, args.in_flight, broker.proc.pid)
                    rows[name].append(row)
                    print(f"round {r + 1} {name}: {row}", file=sys.stderr, flush=True)
        finally:
            await producer.stop()
    finally:
        broker.stop()
    return {"messages": args.messages, "size": args.size, "batch": args.batch, "load": os.getloadavg(), **rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadgen.keyed_send", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--size", type=int, default=2048, help="bytes per message (a routed message is ~2 KB)")
    p.add_argument("--batch", type=int, default=64, help="messages per router batch")
    p.add_argument("--in-flight", type=int, default=4, help="batches unacknowledged at once")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(run(p.parse_args(argv))), indent=1))


if __name__ == "__main__":
    main()
