"""`thinkroute lag` against a group whose committed and end offsets are known."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tests.helpers import ROOT
from workers.kafka.clients import ensure_topics, kafka_config
from workers.kafka.lag import DrainTracker, measure
from workers.settings import Settings

pytestmark = pytest.mark.integration

# records per partition, and what the group committed (None: nothing)
PRODUCED = {0: 120, 1: 50, 2: 30}
COMMITTED: dict[int, int | None] = {0: 20, 1: 50, 2: None}
EXPECTED_LAG = {0: 100, 1: 0, 2: 30}


async def _produce_in_bursts(bootstrap: str, topic: str) -> None:
    # linger + one gather: several records per batch, the case where ListOffsets(latest) is wrong on Tansu
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        futs = []
        for partition, n in PRODUCED.items():
            futs += [await producer.send(topic, b"x" * 64, key=b"k%d" % i, partition=partition) for i in range(n)]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_lag_shows_true_lag_against_known_offsets(settings: Settings, unique: str) -> None:
    assert settings.kafka_bootstrap
    bootstrap, topic, group = settings.kafka_bootstrap, settings.topics.prompts, f"lag-{unique}"
    kc = kafka_config(settings)
    await ensure_topics(kc, [topic], len(PRODUCED))
    await _produce_in_bursts(bootstrap, topic)
    known = {TopicPartition(topic, p): o for p, o in COMMITTED.items() if o is not None}
    await _commit(bootstrap, group, known)

    [g] = await measure(kc, {group: [topic]})
    rows = {p.partition: p for p in g.partitions}
    assert {p: r.end for p, r in rows.items()} == PRODUCED
    assert {p: r.committed for p, r in rows.items()} == COMMITTED
    assert {p: r.lag for p, r in rows.items()} == EXPECTED_LAG
    assert g.total == 130 and g.by_topic() == {topic: 130}

    # the drain estimate: the group commits 40 more records between two measurements
    tracker = DrainTracker(window_s=60)
    first = tracker.add(g)
    assert first.rate_per_s is None and first.eta_s is None
    await _commit(bootstrap, group, {TopicPartition(topic, 0): 60})
    [g2] = await measure(kc, {group: [topic]})
    assert g2.total == 90
    d = tracker.add(g2)
    dt = g2.taken_at - g.taken_at
    assert d.rate_per_s == pytest.approx(40 / dt) and d.eta_s == pytest.approx(90 / (40 / dt))

    # the command, as a user runs it: JSON and the table
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    env["THINKROUTE_KAFKA_BOOTSTRAP"] = bootstrap
    argv = [sys.executable, "-m", "workers", "lag", "--group", f"{group}={topic}", "--sample", "0"]
    proc = await asyncio.to_thread(subprocess.run, [*argv, "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [report] = json.loads(proc.stdout)
    assert report["group"] == group and report["total_lag"] == 90 and report["lag_by_topic"] == {topic: 90}
    got = {p["partition"]: (p["committed"], p["end"], p["lag"]) for p in report["partitions"]}
    assert got == {0: (60, 120, 60), 1: (50, 50, 0), 2: (None, 30, 30)}
    assert report["rate_per_s"] is None and report["drain_s"] is None  # one measurement: no rate

    proc = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{group}: total lag 90" in proc.stdout and "drain unknown" in proc.stdout

    # --watch: one JSON object per measurement; from the second on, a rate (0 here: nothing moves)
    watch = await asyncio.create_subprocess_exec(
        *argv, "--json", "--watch", "--interval", "0.2", env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert watch.stdout is not None
        lines = [json.loads(await asyncio.wait_for(watch.stdout.readline(), 30)) for _ in range(3)]
    finally:
        watch.terminate()
        await watch.wait()
    assert [x["groups"][0]["total_lag"] for x in lines] == [90, 90, 90]
    assert lines[0]["groups"][0]["rate_per_s"] is None
    assert lines[2]["groups"][0]["rate_per_s"] == 0.0 and lines[2]["groups"][0]["drain_s"] is None
    assert lines[0]["at"] < lines[1]["at"] < lines[2]["at"]

    bad = await asyncio.to_thread(
        subprocess.run, [*argv[:4], "--group", "nope=missing-topic"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert bad.returncode == 2 and "missing-topic do not exist" in bad.stderr
