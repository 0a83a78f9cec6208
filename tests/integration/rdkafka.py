"""confluent-kafka (librdkafka) as a second, independent Kafka client for the tests: topics, produce with
acknowledgements, read topics to exact counts. Blocking calls: run them with ``asyncio.to_thread`` while
in-process workers share the event loop."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def rdkafka(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """librdkafka's settings for ``bootstrap``: ``extra`` adds or overrides (security, timeouts)."""
    return {"bootstrap.servers": bootstrap, "log_level": 3, **extra}


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient(rdkafka(bootstrap))
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    for name, fut in futures.items():
        fut.result(timeout=30)
        assert name in admin.list_topics(timeout=10).topics


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[Message]:
    """Every record acknowledged (acks=all) or the test fails; the delivered messages."""
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def report(err: KafkaError | None, msg: Message) -> None:
        (errors.append(err) if err is not None else delivered.append(msg))

    producer = Producer(rdkafka(bootstrap, acks="all", **{"linger.ms": 5, "enable.idempotence": False}))
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=report)
    assert producer.flush(30) == 0
    producer.close()
    assert errors == [] and len(delivered) == len(records)
    return delivered


def consume(
    bootstrap: str, counts: dict[str, int], partitions: int, timeout_s: float = 120, **conf: Any
) -> dict[str, list[Message]]:
    """Read each topic from its beginning until it holds exactly its expected count (assigned partitions, no
    group state); fails on a consumer error or after ``timeout_s``. ``conf``: more librdkafka settings."""
    consumer = Consumer(
        rdkafka(
            bootstrap,
            **{"group.id": "interop-reader", "enable.auto.commit": False, "auto.offset.reset": "earliest"},
            **{"fetch.wait.max.ms": 50, "session.timeout.ms": 6000},
            **conf,
        )
    )
    got: dict[str, list[Message]] = {t: [] for t in counts}
    deadline = time.monotonic() + timeout_s
    try:
        listed = consumer.list_topics(timeout=10).topics
        found = {t: len(listed[t].partitions) if t in listed else 0 for t in counts}
        # a topic auto-created before the test made it has the broker's default count: read all or say so
        assert found == dict.fromkeys(counts, partitions), f"partitions per topic {found}, expected {partitions}"
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in counts for p in range(partitions)])
        while any(len(got[t]) < n for t, n in counts.items()):
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out with {_progress(consumer, got, partitions)} of {counts}")
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                assert msg.error() is None, msg.error()
                got[msg.topic()].append(msg)
        # nothing more than expected arrives (one more fetch round after the counts were reached)
        extra = [m for m in consumer.consume(num_messages=500, timeout=1.0) if m.error() is None]
        assert extra == []
    finally:
        consumer.close()
    return got


def _progress(consumer: Consumer, got: dict[str, list[Message]], partitions: int) -> dict[str, str]:
    """Per topic, what was read and where each partition stands: ``p: read / high watermark (last fetch)``."""
    out = {}
    for t, msgs in got.items():
        parts = []
        for p in range(partitions):
            read = sum(m.partition() == p for m in msgs)
            _, high = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
            parts.append(f"{p}: {read}/{high}")
        out[t] = f"{len(msgs)} ({', '.join(parts)})"
    return out
