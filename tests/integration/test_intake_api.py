"""Intake and finalize against the real broker, Redis and a local file storage: a 300-line input file lands as
300 signed prompts on the prompts topic with its ids registered and the batch running; a malformed file fails
with its line errors and publishes nothing; a cancelled batch's files hold what ran and what was stopped.

Needs the Store lifecycle (``workers.store.lifecycle``), the file index and the file storage of issue 15: until
those land, these fail with NotImplementedError."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from schemas.messages import PromptMessage
from schemas.records import BatchInfo, FileRecord, JobMeta, RequestResult, Usage
from tests.factories import request_line, route_decision
from tests.integration.helpers import read_topic
from workers.files.storage import FileStorage, open_storage
from workers.kafka.clients import ensure_topics, kafka_config, make_producer
from workers.settings import ApiSettings, Settings
from workers.store.files import FileIndex
from workers.store.integrity import Verdict, request_id
from workers.store.jobstore import LEASE_S, Store
from workers.submit.finalize import finalize
from workers.submit.intake import intake

pytestmark = pytest.mark.integration


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 4096):
        yield data[i : i + 4096]


async def upload(storage: FileStorage, data: bytes) -> FileRecord:
    file_id = f"file-{uuid.uuid4().hex[:24]}"
    size = await storage.put(file_id, _chunks(data))
    return FileRecord(
        id=file_id,
        owner="alice",
        filename="in.jsonl",
        purpose="batch",
        bytes=size,
        lines=data.count(b"\n"),
        created_at=time.time(),
        storage_key=file_id,
    )


async def new_batch(store: Store, unique: str, input_file: FileRecord) -> str:
    job = f"batch_{unique}_{uuid.uuid4().hex[:6]}"
    now = time.time()
    meta = JobMeta(
        job_id=job,
        total=0,
        source=f"api:{input_file.id}",
        submitted_at=now,
        state="validating",
        owner="alice",
        batch=BatchInfo(input_file_id=input_file.id),
        expires_at=now + 86_400,
    )
    await store.create_batch(meta, LEASE_S)
    return job


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"api": ApiSettings(files_dir=tmp_path / "files")})


@pytest.fixture
async def producer(api_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    kc, t = kafka_config(api_settings), api_settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], api_settings.partitions)
    p = make_producer(kc)
    await p.start()
    yield p
    await p.stop()


async def test_a_300_line_file_lands_on_the_prompts_topic(
    api_settings: Settings, redis: Redis, producer: AIOKafkaProducer, tmp_path: Path, unique: str
) -> None:
    s, store = api_settings, Store(redis)
    storage = open_storage(s.api, tmp_path)
    n = 300
    source = await upload(storage, b"".join(request_line(f"r{i}", content=f"Q{i}?") + b"\n" for i in range(n)))
    job = await new_batch(store, unique, source)

    assert await intake(producer, store, storage, s, job, source) == "running"

    meta = await store.job_meta(job)
    assert meta is not None and (meta.state, meta.total, meta.owner) == ("running", n, "alice")
    want = [request_id(job, f"r{i}") for i in range(n)]
    assert await store.request_ids_in_order(job, 0, 1000) == want
    assert await store.request_ids_in_order(job, 250, 100) == want[250:]
    records = await read_topic(s.kafka_bootstrap or "", s.topics.prompts, n)
    prompts = [PromptMessage.model_validate_json(r.value) for r in records]
    assert sorted(p.request_id for p in prompts) == sorted(want) and len(prompts) == n
    assert all(r.key.decode() == p.request_id for r, p in zip(records, prompts, strict=True))
    for part in {r.partition for r in records}:  # input order within each partition
        lines = [p.line for r, p in zip(records, prompts, strict=True) if r.partition == part]
        assert lines == sorted(lines)
    for p in prompts[:20]:  # signed with the secret begin_submit recorded: the worker's check passes
        assert await store.admit(p) == Verdict.OK
        forged = p.model_copy(update={"line": p.line + 1})
        assert await store.admit(forged) == Verdict.BAD_MAC


async def test_a_malformed_file_fails_validation_with_its_line_errors(
    api_settings: Settings, redis: Redis, producer: AIOKafkaProducer, tmp_path: Path, unique: str
) -> None:
    s, store = api_settings, Store(redis)
    storage = open_storage(s.api, tmp_path)
    lines = [request_line("a"), b"{oops", request_line("a"), json.dumps({"custom_id": "b"}).encode()]
    source = await upload(storage, b"\n".join(lines) + b"\n")
    job = await new_batch(store, unique, source)

    assert await intake(producer, store, storage, s, job, source) == "failed"

    meta = await store.job_meta(job)
    assert meta is not None and meta.state == "failed" and meta.errors is not None
    got = [(e.line, e.code) for e in meta.errors]
    assert got == [(2, "invalid_json_line"), (3, "duplicate_custom_id"), (4, "missing_required_parameter")]
    assert meta.failed_reason is not None and "3 error(s)" in meta.failed_reason
    assert await store.request_ids_in_order(job, 0, 10) == []
    # nothing was published: the first record of every partition is the sentinel produced now
    for part in range(s.partitions):
        await producer.send_and_wait(s.topics.prompts, b"sentinel", key=b"s", partition=part)
    records = await read_topic(s.kafka_bootstrap or "", s.topics.prompts, s.partitions)
    assert [r.value for r in records] == [b"sentinel"] * len(records)


def answer(job: str, i: int, status: str) -> RequestResult:
    body = {"id": f"c{i}", "object": "chat.completion", "choices": [{"message": {"content": "4"}}]}
    return RequestResult(
        request_id=request_id(job, f"r{i}"),
        job_id=job,
        custom_id=f"r{i}",
        line=i + 1,
        status=status,  # type: ignore[arg-type]
        route=route_decision(),
        model="m",
        usage=Usage(prompt_tokens=5, completion_tokens=2),
        http_status=200 if status == "completed" else None,
        response_body=body if status == "completed" else None,
        error=None if status == "completed" else "timed out",
        error_code=None if status == "completed" else "timeout",
        attempts=1,
        llm_latency_s=0.1,
        latency_s=0.1,
        finished_at=time.time(),
    )


async def test_a_cancelled_batchs_files_hold_what_ran_and_what_was_stopped(
    api_settings: Settings, redis: Redis, producer: AIOKafkaProducer, tmp_path: Path, unique: str
) -> None:
    s, store, index = api_settings, Store(redis), FileIndex(redis)
    storage = open_storage(s.api, tmp_path)
    n = 6
    source = await upload(storage, b"".join(request_line(f"r{i}") + b"\n" for i in range(n)))
    job = await new_batch(store, unique, source)
    assert await intake(producer, store, storage, s, job, source) == "running"
    for i, status in ((0, "completed"), (2, "failed"), (3, "completed")):
        assert await store.write_result(answer(job, i, status))
    assert await store.stop_job(job, "cancelled", settle_s=5.0) == "cancelled"  # nothing in flight

    out, err = await finalize(store, index, storage, job)

    assert out is not None and err is not None
    output = [json.loads(line) for line in b"".join([c async for c in storage.get(out.storage_key)]).splitlines()]
    errors = [json.loads(line) for line in b"".join([c async for c in storage.get(err.storage_key)]).splitlines()]
    assert [line["custom_id"] for line in output] == ["r0", "r3"]
    assert [(line["custom_id"], line["error"]["code"]) for line in errors] == [
        ("r1", "batch_cancelled"),
        ("r2", "timeout"),
        ("r4", "batch_cancelled"),
        ("r5", "batch_cancelled"),
    ]
    assert (out.lines, err.lines) == (2, 4)
    assert await index.get(out.id) == out and await index.get(err.id) == err
    meta = await store.job_meta(job)
    assert meta is not None and (meta.output_file_id, meta.error_file_id) == (out.id, err.id)
    assert meta.finalized_at is not None
