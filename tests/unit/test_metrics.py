"""WorkerMetrics without a broker: per-worker registries, scrape-time lag from high watermark and commits."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeConsumer
from workers.local.services import free_port
from workers.runtime.metrics import WorkerMetrics, start_metrics_server


def samples(m: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_lag_per_partition_from_highwater_minus_commit() -> None:
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)
    m = WorkerMetrics("router", "g")
    m.watch(FakeConsumer(highwater={a: 100, b: 40, c: None}))  # type: ignore[arg-type]
    m.committed({a: 70, b: 40})
    got = samples(m)
    assert got[("kafka_consumergroup_lag", (("consumergroup", "g"), ("partition", "0"), ("topic", "t")))] == 30
    assert got[("kafka_consumergroup_lag", (("consumergroup", "g"), ("partition", "1"), ("topic", "t")))] == 0
    assert got[("kafka_consumergroup_lag_sum", (("consumergroup", "g"), ("topic", "t")))] == 30
    assert got[("kafka_topic_partition_current_offset", (("partition", "0"), ("topic", "t")))] == 100
    assert got[("thinkroute_assigned_partitions", (("topic", "t"),))] == 2
    assert got[("thinkroute_assigned_partitions", (("topic", "u"),))] == 1
    assert not any(n == "kafka_consumergroup_lag" and ("topic", "u") in ls for n, ls in got)  # no fetch yet
    m.forget([a])
    assert ("kafka_consumergroup_lag", (("consumergroup", "g"), ("partition", "0"), ("topic", "t"))) not in samples(m)


def test_two_workers_in_one_process_do_not_share_counters() -> None:
    one, two = WorkerMetrics("router", "g"), WorkerMetrics("router", "g")
    one.consumed("t", 5)
    assert samples(one)[("thinkroute_messages_in_total", (("stage", "router"), ("topic", "t")))] == 5
    assert ("thinkroute_messages_in_total", (("stage", "router"), ("topic", "t"))) not in samples(two)


async def test_server_serves_metrics_and_a_taken_port_is_not_fatal() -> None:
    m = WorkerMetrics("inference", "g")
    m.consumed("r", 3)
    port = free_port()
    server = await start_metrics_server(m, "127.0.0.1", port)
    assert server is not None
    try:
        assert await start_metrics_server(m, "127.0.0.1", port) is None  # taken: logged, worker goes on
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        body = await reader.read()
        writer.close()
        assert body.startswith(b"HTTP/1.1 200 OK")
        assert b'thinkroute_messages_in_total{stage="inference",topic="r"} 3.0' in body
    finally:
        server.close()
        await server.wait_closed()
    assert await start_metrics_server(m, "127.0.0.1", 0) is None  # 0 = off
