"""WorkerMetrics without a broker: per-worker registries, scrape-time lag from high watermark and commits,
process metrics; the /metrics and /ready server on the worker's loop."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from tests.fakes import FakeConsumer
from tests.helpers import wait_until
from workers.local.services import free_port
from workers.runtime.metrics import WorkerMetrics, consumer_joined
from workers.runtime.metrics_server import MetricsServer, start_metrics_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def samples(m: WorkerMetrics) -> Samples:
    return parse(m.render().decode())


def test_lag_per_partition_from_highwater_minus_commit() -> None:
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)
    m = WorkerMetrics("router", "g")
    m.watch(FakeConsumer({a: 100, b: 40, c: None}))  # type: ignore[arg-type]
    m.committed({a: 70, b: 40})
    got = samples(m)
    t0 = (("consumergroup", "g"), ("partition", "0"), ("topic", "t"))
    t1 = (("consumergroup", "g"), ("partition", "1"), ("topic", "t"))
    assert got[("thinkroute_consumer_lag_records", t0)] == 30
    assert got[("thinkroute_consumer_lag_records", t1)] == 0
    assert got[("thinkroute_consumer_lag_sum_records", (("consumergroup", "g"), ("topic", "t")))] == 30
    assert got[("thinkroute_committed_offset", t0)] == 70
    assert got[("thinkroute_partition_high_watermark", (("partition", "0"), ("topic", "t")))] == 100
    assert got[("thinkroute_assigned_partitions", (("topic", "t"),))] == 2
    assert got[("thinkroute_assigned_partitions", (("topic", "u"),))] == 1
    assert not any(n == "thinkroute_consumer_lag_records" and ("topic", "u") in ls for n, ls in got)  # no fetch yet
    m.forget([a])
    assert ("thinkroute_consumer_lag_records", t0) not in samples(m)


def test_names_are_ours_and_carry_their_unit() -> None:
    """No series under another exporter's name (kafka_exporter's kafka_*, the semantic router's llm_*): a
    query without a job filter would add them up with the exporter's. Histograms and the lag in base units."""
    m = WorkerMetrics("router", "g")
    m.watch(FakeConsumer(highwater={TopicPartition("t", 0): 9}))  # type: ignore[arg-type]
    m.committed({TopicPartition("t", 0): 4})
    families = {f.name: f.type for f in m.registry.collect()}
    assert {n.split("_")[0] for n in families} == {"thinkroute", "process", "python"}
    for name, kind in families.items():
        if name.startswith("thinkroute_") and kind == "histogram":
            assert name.endswith(("_seconds", "_records")), name
    assert "thinkroute_consumer_lag_records" in families and "thinkroute_consumer_lag_sum_records" in families
    assert "process_resident_memory_bytes" in families


def test_two_workers_in_one_process_do_not_share_counters() -> None:
    one, two = WorkerMetrics("router", "g"), WorkerMetrics("router", "g")
    one.consumed("t", 5)
    assert samples(one)[("thinkroute_messages_in_total", (("stage", "router"), ("topic", "t")))] == 5
    assert ("thinkroute_messages_in_total", (("stage", "router"), ("topic", "t"))) not in samples(two)


def test_process_metrics_are_exported() -> None:
    got = samples(WorkerMetrics("inference", "g"))
    assert got[("process_resident_memory_bytes", ())] > 10 * 2**20  # a Python process with numpy: tens of MB
    assert got[("process_cpu_seconds_total", ())] > 0
    assert got[("process_open_fds", ())] >= 3
    assert any(n == "python_info" for n, _ in got)
    assert any(n == "python_gc_collections_total" for n, _ in got)


async def test_consumer_joined_reads_the_real_consumer_before_it_joins() -> None:
    m = WorkerMetrics("router", "g")
    assert not m.ready()  # nothing watched
    m.watch(FakeConsumer(highwater={}))  # type: ignore[arg-type]
    assert not m.ready()  # no assignment and no group state: not a member
    m.watch(FakeConsumer(highwater={TopicPartition("t", 0): None}))  # type: ignore[arg-type]
    assert m.ready()
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", group_id="g")
    consumer.subscribe(["t"])  # subscribed, never started: no coordinator, no member id
    assert not consumer_joined(consumer)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url, timeout=5)


async def test_server_serves_metrics_and_a_taken_port_is_not_fatal() -> None:
    m = WorkerMetrics("inference", "g")
    m.consumed("r", 3)
    port = free_port()
    server = await start_metrics_server(m, "127.0.0.1", port)
    assert server is not None
    try:
        assert await start_metrics_server(m, "127.0.0.1", port) is None  # taken: logged, worker goes on
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert body.startswith(b"HTTP/1.1 200 OK")
        assert b'thinkroute_messages_in_total{stage="inference",topic="r"} 3.0' in body
        assert (await get(f"http://127.0.0.1:{port}/nope")).status_code == 404
        gz = await get(f"http://127.0.0.1:{port}/metrics")  # httpx asks for gzip, as Prometheus does
        assert gz.headers["content-encoding"] == "gzip" and gz.num_bytes_downloaded < len(gz.content) / 4
        assert parse(gz.text)[("thinkroute_messages_in_total", (("stage", "inference"), ("topic", "r")))] == 3
    finally:
        await server.close()
    try:
        await get(f"http://127.0.0.1:{port}/metrics")
        raise AssertionError("the server still answers after close")
    except httpx.TransportError:
        pass
    assert await start_metrics_server(m, "127.0.0.1", 0) is None  # 0 = off


async def test_ready_is_503_until_the_consumer_joins() -> None:
    m = WorkerMetrics("inference", "g")
    server = await start_metrics_server(m, "127.0.0.1", free_port())
    assert server is not None
    url = f"http://127.0.0.1:{server.port}"
    try:
        resp = await get(f"{url}/ready")
        assert resp.status_code == 503 and b"not consuming" in resp.content
        assert (await get(f"{url}/metrics")).status_code == 200  # alive, not ready
        assert parse((await get(f"{url}/metrics")).text)[("thinkroute_consumer_joined", (("consumergroup", "g"),))] == 0
        m.watch(FakeConsumer(highwater={TopicPartition("r", 0): 5}))  # type: ignore[arg-type]
        resp = await get(f"{url}/ready")
        assert resp.status_code == 200 and resp.text == "ready\n"
        assert parse((await get(f"{url}/metrics")).text)[("thinkroute_consumer_joined", (("consumergroup", "g"),))] == 1
    finally:
        await server.close()


class _WhereCollected(Collector):
    def __init__(self) -> None:
        self.threads: list[int] = []
        self.loops: list[asyncio.AbstractEventLoop] = []

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.get_ident())
        self.loops.append(asyncio.get_running_loop())  # raises outside a loop
        yield GaugeMetricFamily("probe", "where collection ran", value=1)


async def test_collection_runs_on_the_worker_loop_and_signals_stay_the_workers() -> None:
    m = WorkerMetrics("router", "g")
    probe = _WhereCollected()
    m.registry.register(probe)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = await start_metrics_server(m, "127.0.0.1", free_port())
    assert isinstance(server, MetricsServer)
    try:

        async def started() -> bool:
            return server.server.started

        await wait_until(started, 10, "uvicorn to start")
        assert {sig: signal.getsignal(sig) for sig in before} == before  # uvicorn did not take SIGTERM/SIGINT
        assert (await get(f"http://127.0.0.1:{server.port}/metrics")).status_code == 200
        assert probe.threads == [threading.get_ident()] and probe.loops == [asyncio.get_running_loop()]
    finally:
        await server.close()
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_grades_and_the_exploration_samples_tokens_are_counted_apart_from_the_routed_ones() -> None:
    from tests.factories import explored_pair

    m = WorkerMetrics("inference", "g")
    routed, shadow = explored_pair(1, "law", "direct", (30, True, "B"), (150, False, "C"))
    plain, _ = explored_pair(2, "law", "reasoning", (70, False, "A"), (5, None, None))
    plain = plain.model_copy(update={"route": plain.route.model_copy(update={"explore": False})})
    m.result(routed, written=True)
    m.result(plain, written=True)
    m.result(plain, written=False)  # a duplicate counts nothing
    m.explored(shadow, written=True)
    m.explored(shadow, written=False)
    got = samples(m)
    graded = "thinkroute_graded_results_total"
    assert got[(graded, (("correct", "true"), ("route", "direct")))] == 1
    assert got[(graded, (("correct", "false"), ("route", "reasoning")))] == 1
    assert got[("thinkroute_graded_shadow_answers_total", (("correct", "false"), ("route", "reasoning")))] == 1
    tokens = "thinkroute_explored_tokens_total"
    assert got[(tokens, (("arm", "routed"), ("kind", "completion"), ("route", "direct")))] == 30
    assert got[(tokens, (("arm", "shadow"), ("kind", "completion"), ("route", "reasoning")))] == 150
    assert not any(n == tokens and ("route", "reasoning") in ls and ("arm", "routed") in ls for n, ls in got)
    # the routed series hold the routed results only: 30 + 70, never the shadow's 150
    assert got[("thinkroute_tokens_total", (("kind", "completion"), ("route", "direct")))] == 30
    assert got[("thinkroute_tokens_total", (("kind", "completion"), ("route", "reasoning")))] == 70
