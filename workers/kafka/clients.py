"""Kafka clients, built one way for the router, the inference workers and the CLI.

Works against Apache Kafka and the Tansu broker of the embedded stack alike (see README, Kafka).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from workers.errors import ConfigError
from workers.kafka.security import start_client
from workers.settings import KafkaSettings, Settings

__all__ = ["ensure_topics", "kafka_config", "make_consumer", "make_producer", "start_client"]

log = logging.getLogger(__name__)


def make_producer(cfg: KafkaSettings, *, linger_ms: int = 5) -> AIOKafkaProducer:
    """acks=all: a publish counts only once the broker has it; offsets are committed after that."""
    return AIOKafkaProducer(
        **cfg.client_kwargs(),
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        compression_type=None,
        request_timeout_ms=30_000,
    )


def make_consumer(
    cfg: KafkaSettings, group: str, *, max_poll_records: int = 500, fetch_max_wait_ms: int = 50
) -> AIOKafkaConsumer:
    """Manual commits only, after processing; new groups start at the earliest offset.

    ``fetch_max_wait_ms``: how long the broker may hold a fetch for data; it bounds the latency a quiet
    partition adds (Tansu holds a fetch for about this long even when data arrives; must stay > 0).
    The caller subscribes, with its rebalance listener.
    """
    if fetch_max_wait_ms < 1:
        raise ValueError("fetch_max_wait_ms must be >= 1 (a broker may never answer a fetch with 0)")
    return AIOKafkaConsumer(
        **cfg.client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        max_poll_records=max_poll_records,
        fetch_max_wait_ms=fetch_max_wait_ms,
        isolation_level="read_uncommitted",
    )


async def ensure_topics(cfg: KafkaSettings, names: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet, with their final partition count."""
    admin = AIOKafkaAdminClient(**cfg.client_kwargs())
    await start_client(admin, cfg)
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return
        try:
            await admin.create_topics(
                [NewTopic(name=n, num_partitions=partitions, replication_factor=1) for n in missing]
            )
        except TopicAlreadyExistsError:
            pass
        log.info("created topics %s with %d partitions", missing, partitions)
    finally:
        await admin.close()


def kafka_config(s: Settings) -> KafkaSettings:
    """The settings' Kafka model, or a ConfigError when no broker is configured."""
    if not s.kafka_bootstrap:
        raise ConfigError("THINKROUTE_KAFKA_BOOTSTRAP is not set")
    return s.kafka_settings()
