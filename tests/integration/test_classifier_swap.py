"""A policy naming another classifier, picked up by a running router: real broker, router in-process.

The second artefact is the shipped one copied with its labels renamed (``x-`` + label) and its card's version
``relabelled-1``: the same model, visibly other decisions. Batch 1 is routed with the shipped table, the
policy file is then replaced (os.replace) by v2 naming the copy (a relative path) with a rule on every ``x-``
label, batch 2 is routed: batch 1 is all shipped labels and version, batch 2 all ``x-`` and relabelled-1,
every prompt routed exactly once, the router task the same one throughout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import PromptMessage, RoutedMessage
from tests.helpers import wait_until
from tests.integration.helpers import committed, produce, running, sample_requests
from workers.kafka.clients import ensure_topics, kafka_config
from workers.router.serve import serve_router
from workers.settings import Settings

pytestmark = pytest.mark.integration

DEFAULT = Path(__file__).resolve().parents[2] / "workers" / "router" / "default_policy.yaml"


def relabelled(artifact: Path, where: Path) -> list[str]:
    shutil.copytree(artifact, where)
    labels = ["x-" + label for label in json.loads((where / "labels.json").read_text("utf-8"))]
    (where / "labels.json").write_text(json.dumps(labels), "utf-8")
    card = json.loads((where / "card.json").read_text("utf-8"))
    (where / "card.json").write_text(json.dumps({**card, "version": "relabelled-1"}), "utf-8")
    return labels


def replace(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc), "utf-8")
    os.replace(tmp, path)


def prompts(job: str, n: int, start: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i, r in enumerate(sample_requests(start + n)[start:], start):
        msg = PromptMessage(
            request_id=f"{job}/{i}",
            job_id=job,
            custom_id=r.custom_id,
            line=i + 1,
            body=ChatBody(messages=[ChatMessage(role="user", content=r.body.messages[-1].content)]),
            submitted_at=time.time(),
        )
        out.append((msg.request_id.encode(), msg.model_dump_json().encode()))
    return out


async def test_router_switches_classifier_by_policy_version(
    settings: Settings, artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.router")
    shipped = json.loads((artifact / "labels.json").read_text("utf-8"))
    shipped_version = json.loads((artifact / "card.json").read_text("utf-8"))["version"]
    x_labels = relabelled(artifact, tmp_path / "arts" / "relabelled")
    policy = tmp_path / "policy.yaml"
    replace(policy, {**yaml.safe_load(DEFAULT.read_text("utf-8")), "version": "v1"})
    s = settings.model_copy(
        update={"router": settings.router.model_copy(update={"policy_path": policy, "policy_poll_s": 0.05})}
    )
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    job = f"job-clf-{t.prompts}"
    first, second = prompts(job, 40, 0), prompts(job, 40, 40)

    async def routed_up_to(n: int) -> bool:
        w.check()
        offsets = await committed(kc.bootstrap, s.router.group, [t.prompts], s.partitions)
        return sum(max(v, 0) for v in offsets.values()) >= n

    def swapped() -> bool:
        w.check()
        return any("classifier relabelled-1 replaces" in r.getMessage() for r in caplog.records)

    async with running(lambda stop: serve_router(s, stop, artifact)) as w:
        router_task = w.tasks[0]
        await produce(kc.bootstrap, t.prompts, first)
        await wait_until(lambda: routed_up_to(40), 60, "batch 1 routed")
        v2 = {
            "version": "v2",
            "classifier": "arts/relabelled",  # relative to the policy file's directory
            "categories": {label: {"use_reasoning": label.endswith("math")} for label in x_labels},
        }
        replace(policy, v2)

        async def picked_up() -> bool:
            return swapped()

        await wait_until(picked_up, 60, "the router to load the relabelled classifier")
        await produce(kc.bootstrap, t.prompts, second)
        await wait_until(lambda: routed_up_to(80), 60, "batch 2 routed")
        assert w.tasks[0] is router_task and not router_task.done()  # never restarted
        offsets = await committed(kc.bootstrap, s.router.group, [t.prompts], s.partitions)

    assert sum(offsets.values()) == 80  # every prompt committed once by the one router
    routed, ends = await read_all(kc.bootstrap, [t.reasoning, t.direct], 80)
    assert ends == 80  # the routed topics hold 80 messages in all: none routed twice
    ids = [m.prompt.request_id for m in routed]
    assert sorted(ids) == sorted(k.decode() for k, _ in first + second)  # none lost, none twice
    batch1 = {k.decode() for k, _ in first}
    for m in routed:
        d = m.route
        if m.prompt.request_id in batch1:
            assert (d.policy_version, d.classifier_version) == ("v1", shipped_version)
            assert d.category in shipped
        else:
            assert (d.policy_version, d.classifier_version) == ("v2", "relabelled-1")
            assert d.category in x_labels and d.reason == "category"
            assert d.use_reasoning == d.category.endswith("math")
    assert sum("router up" in r.getMessage() for r in caplog.records) == 1


async def read_all(bootstrap: str, topics: list[str], total: int) -> tuple[list[RoutedMessage], int]:
    """The first ``total`` routed messages on ``topics`` (whichever topic they went to), and how many the topics
    hold in all (their high watermarks)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[RoutedMessage] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < total:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(RoutedMessage.model_validate_json(r.value) for r in records)
            # the high watermark of each partition, from fetch responses (Tansu's ListOffsets is wrong: KAFKA.md)
            while any(consumer.highwater(tp) is None for tp in consumer.assignment()):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(RoutedMessage.model_validate_json(r.value) for r in records)
        ends = sum(consumer.highwater(tp) or 0 for tp in consumer.assignment())
    finally:
        await consumer.stop()
    return out, ends
