"""Shared parts of ``python -m loadgen bench``: the prompts, producing, reading back, waiting, RSS, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.batch import ChatBody
from schemas.messages import PromptMessage
from workers import data
from workers.classifier.build import DEFAULT_SEED as CLASSIFIER_SEED
from workers.classifier.splits import is_heldout, normalise
from workers.data.prompts import format_mcq_prompt
from workers.local.services import Service
from workers.settings import KafkaSettings
from workers.store.integrity import sign

SAMPLE = Path(__file__).resolve().parent / "samples" / "mmlu_pro_200.jsonl"
MODEL = "Qwen/Qwen3-30B-A3B"
SEED = 4242
POLL_S = 0.25


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def load_bodies(n: int, seed: int = SEED, heldout: bool = False) -> list[ChatBody]:
    """``n`` chat bodies of real MMLU-Pro text: the 200 sample lines first, then MMLU-Pro test questions
    (seeded order, formatted as the samples are) until there are ``n``; repeats only past 12,000.

    ``heldout``: only the classifier's held-out questions (2,299, never trained on), no sample lines: the first
    tier is surer of the questions it was fitted on, so its share, and the speed, would be flattered by them."""
    bodies = []
    if not heldout:
        bodies = [ChatBody.model_validate(json.loads(line)["body"]) for line in SAMPLE.read_text().splitlines() if line]
    if n <= len(bodies):
        return bodies[:n]
    seen = {b.messages[-1].content for b in bodies}
    rows = list(data.read_jsonl(data.MMLU_PRO_TEST))
    if heldout:
        rows = [r for r in rows if is_heldout(CLASSIFIER_SEED, normalise(str(r["question"])))]
    random.Random(seed).shuffle(rows)
    for row in rows:
        text = format_mcq_prompt(row["question"], row["options"])
        if text not in seen:
            seen.add(text)
            msg = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 8192}
            bodies.append(ChatBody.model_validate(msg))
            if len(bodies) >= n:
                break
    while len(bodies) < n:
        bodies.extend(bodies[: n - len(bodies)])
    return bodies


def prompt(job: str, i: int, body: ChatBody, secret: bytes | None = None) -> PromptMessage:
    """Prompt ``i`` of ``job``; signed with the job's secret when given (the inference worker answers only
    prompts of a registered job, signed by its submitter: ``loadgen.bench_pipeline.register``)."""
    msg = PromptMessage(
        request_id=f"{job}/{i}", job_id=job, custom_id=str(i), line=i + 1, body=body, submitted_at=time.time()
    )
    return sign(msg, secret) if secret is not None else msg


async def send_prompts(
    producer: AIOKafkaProducer, topic: str, job: str, bodies: Sequence[ChatBody], secret: bytes | None = None
) -> None:
    """Publish one prompt per body (``submitted_at`` = its send time) and wait for every ack."""
    futs = []
    for i, body in enumerate(bodies):
        msg = prompt(job, i, body, secret)
        futs.append(await producer.send(topic, msg.model_dump_json().encode(), key=msg.request_id.encode()))
    await asyncio.gather(*futs)


async def send_at_rate(
    producer: AIOKafkaProducer, topic: str, job: str, bodies: Sequence[ChatBody], rate: float, seconds: float
) -> int:
    """Open loop: publish at ``rate`` prompts/s for ``seconds`` (cycling through ``bodies``); returns the count."""
    total = max(int(rate * seconds), 1)
    start = time.monotonic()
    futs = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        msg = prompt(job, i, bodies[i % len(bodies)])
        futs.append(await producer.send(topic, msg.model_dump_json().encode(), key=msg.request_id.encode()))
    await asyncio.gather(*futs)
    return total


async def read_back(
    kc: KafkaSettings, topics: Sequence[str], count: int, job: str, timeout_s: float = 120.0
) -> list[bytes]:
    """The values of the records of ``job`` on ``topics`` (read from the start, filtered by job id)."""
    consumer = AIOKafkaConsumer(
        *topics,
        **kc.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    needle = f'"job_id":"{job}"'.encode()
    out: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(out) < count:
                for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                    out.extend(r.value for r in records if r.value and needle in r.value)
    finally:
        await consumer.stop()
    return out


class Committed:
    """Committed offsets of one group, through one long-lived admin client (cheap to poll)."""

    def __init__(self, kc: KafkaSettings, group: str, topic: str, partitions: int) -> None:
        self.admin = AIOKafkaAdminClient(**kc.client_kwargs())
        self.group = group
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    async def __aenter__(self) -> Committed:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def total(self) -> int:
        got = await self.admin.list_consumer_group_offsets(self.group, partitions=self.tps)
        return sum(max(got[tp].offset, 0) for tp in self.tps if tp in got)

    async def wait_for(self, target: int, timeout_s: float, check: Service | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while (done := await self.total()) < target:
            if check is not None and not check.alive():
                raise RuntimeError(f"{check.name} exited ({check.proc.returncode}):\n{check.log_tail(30)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {self.group}: {done}/{target} committed after {timeout_s:.0f}s")
            await asyncio.sleep(POLL_S)


@contextlib.contextmanager
def paused(*procs: Service) -> Iterator[None]:
    """SIGSTOP the workers while a backlog is produced (so producing steals none of their CPU), SIGCONT after."""
    for p in procs:
        os.kill(p.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in procs:
            os.kill(p.proc.pid, signal.SIGCONT)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """Cores used by each named process between ``__init__`` and ``shares()`` (1.0 = one full core)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.c0 = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def shares(self) -> dict[str, float]:
        dt = max(time.monotonic() - self.t0, 1e-9)
        return {name: round((cpu_seconds(pid) - self.c0[name]) / dt, 2) for name, pid in self.pids.items()}


def percentiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed p50/p95/p99 (0.0 for no values)."""
    s = sorted(values)
    out = {}
    for q in qs:
        key = f"p{round(q * 100)}"
        out[key] = s[min(max(math.ceil(q * len(s)) - 1, 0), len(s) - 1)] if s else 0.0
    return out
