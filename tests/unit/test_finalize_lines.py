"""Finalize: a settled batch's output and error files in OpenAI's line formats, in input order, streamed into the
storage in chunks; a stopped request is a ``batch_cancelled``/``batch_expired`` error line; a file with no line
is not written; a storage failure leaves no object and the batch unfinalized."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from typing import Any

import pytest

from schemas.records import RequestResult, Usage
from tests.factories import batch_meta, route_decision
from tests.fakes import FakeBatchStore, FakeFileIndex, MemoryStorage
from workers.errors import InvalidInput
from workers.submit.finalize import BYTES_CHUNK, IDS_CHUNK, finalize

JOB = "batch_f"
KEYS = {"id", "custom_id", "response", "error", "route"}


def result(i: int, kind: str, text: str = "4") -> RequestResult:
    rid = f"{JOB}/c{i}"
    fields: dict[str, Any] = {
        "request_id": rid,
        "job_id": JOB,
        "custom_id": f"c{i}",
        "line": i + 1,
        "route": route_decision("reasoning" if i % 2 else "direct"),
        "model": "m",
        "usage": Usage(prompt_tokens=10, completion_tokens=3),
        "attempts": 1,
        "llm_latency_s": 0.1,
        "latency_s": 0.2,
        "finished_at": 2.0,
    }
    if kind == "completed":
        body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "choices": [{"message": {"content": text}}]}
        return RequestResult(status="completed", http_status=200, response_body=body, answer=text, **fields)
    if kind == "http_error":
        body = {"error": {"message": "no such model", "type": "invalid_request_error", "param": None, "code": None}}
        return RequestResult(status="failed", http_status=404, response_body=body, error="HTTP 404", **fields)
    return RequestResult(status="failed", error="timed out", error_code="timeout", **fields)


def store_of(kinds: list[str | None], state: str = "cancelled", stop: str | None = "cancelled") -> FakeBatchStore:
    """A settled batch of ``len(kinds)`` requests: the result kind of each (None: stopped, never run)."""
    store = FakeBatchStore(batch_meta(JOB, state=state, stop=stop, total=len(kinds)))
    store.ids = [f"{JOB}/c{i}" for i in range(len(kinds))]
    store.results = {f"{JOB}/c{i}": result(i, k) for i, k in enumerate(kinds) if k is not None}
    return store


def lines_of(storage: MemoryStorage, file_id: str) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in storage.objects[file_id].decode().splitlines()]
    assert all(set(line) == KEYS for line in out)
    return out


async def test_each_result_kind_goes_to_its_file_in_input_order() -> None:
    kinds: list[str | None] = ["completed", "http_error", "completed", "timeout", "completed", None, None, "completed"]
    store, index, storage = store_of(kinds), FakeFileIndex(), MemoryStorage()
    out, err = await finalize(store, index, storage, JOB)  # type: ignore[arg-type]
    assert out is not None and err is not None

    output = lines_of(storage, out.id)
    assert [line["custom_id"] for line in output] == ["c0", "c2", "c4", "c7"]
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200 and line["response"]["request_id"] == f"{JOB}/{line['custom_id']}"
        assert line["response"]["body"]["object"] == "chat.completion"
        assert line["route"]["route"] in ("reasoning", "direct")

    errors = {line["custom_id"]: line for line in lines_of(storage, err.id)}
    assert list(errors) == ["c1", "c3", "c5", "c6"]
    assert errors["c1"]["error"] is None  # an HTTP error answer: OpenAI keeps it as the response
    assert errors["c1"]["response"]["status_code"] == 404
    assert errors["c1"]["response"]["body"]["error"]["message"] == "no such model"
    assert errors["c3"]["response"] is None and errors["c3"]["error"]["code"] == "timeout"
    for cid in ("c5", "c6"):
        assert errors[cid]["response"] is None and errors[cid]["route"] == {}
        assert errors[cid]["error"]["code"] == "batch_cancelled" and "cancelled" in errors[cid]["error"]["message"]
    assert len({line["id"] for line in [*output, *errors.values()]}) == len(kinds)  # request ids: unique

    assert (out.kind, out.lines, out.bytes, out.purpose) == ("output", 4, len(storage.objects[out.id]), "batch_output")
    assert (err.kind, err.lines, err.bytes) == ("error", 4, len(storage.objects[err.id]))
    assert (out.owner, out.job_id, out.filename) == ("alice", JOB, f"{JOB}_output.jsonl")
    assert (err.filename, err.storage_key) == (f"{JOB}_error.jsonl", err.id)
    assert out.id.startswith("file-") and len(out.id) == 29 and out.id != err.id
    assert index.records == {out.id: out, err.id: err}
    assert store.finalized == (out.id, err.id)


async def test_an_expired_batchs_requests_not_run_are_batch_expired() -> None:
    store, storage = store_of(["completed", None], state="expired", stop="expired"), MemoryStorage()
    _, err = await finalize(store, FakeFileIndex(), storage, JOB)  # type: ignore[arg-type]
    assert err is not None
    [line] = lines_of(storage, err.id)
    assert (line["custom_id"], line["error"]["code"]) == ("c1", "batch_expired")


async def test_a_file_with_no_line_is_not_written() -> None:
    store, index, storage = store_of(["completed"] * 3, state="done", stop=None), FakeFileIndex(), MemoryStorage()
    out, err = await finalize(store, index, storage, JOB)  # type: ignore[arg-type]
    assert out is not None and err is None
    assert list(storage.objects) == [out.id] and list(index.records) == [out.id]
    assert store.finalized == (out.id, None)

    store, storage = store_of([None, None]), MemoryStorage()  # cancelled before anything ran
    out, err = await finalize(store, FakeFileIndex(), storage, JOB)  # type: ignore[arg-type]
    assert out is None and err is not None and list(storage.objects) == [err.id]

    store, storage = store_of([]), MemoryStorage()
    assert await finalize(store, FakeFileIndex(), storage, JOB) == (None, None)  # type: ignore[arg-type]
    assert storage.objects == {} and store.finalized == (None, None)


async def test_large_files_are_streamed_in_chunks_in_order() -> None:
    n = 2 * IDS_CHUNK + 500
    kinds: list[str | None] = [("completed", "timeout", None)[i % 3] for i in range(n)]
    store, storage = store_of(kinds), MemoryStorage()
    for i in range(0, n, 3):  # answers of ~1 KB
        store.results[f"{JOB}/c{i}"] = result(i, "completed", text="y" * 1000)
    out, err = await finalize(store, FakeFileIndex(), storage, JOB)  # type: ignore[arg-type]
    assert out is not None and err is not None
    assert [line["custom_id"] for line in lines_of(storage, out.id)] == [f"c{i}" for i in range(0, n, 3)]
    assert [line["custom_id"] for line in lines_of(storage, err.id)] == [f"c{i}" for i in range(n) if i % 3]
    chunks = storage.chunks[out.id]
    assert len(chunks) > 10 and max(chunks) < BYTES_CHUNK + 2000  # ~64 KB each, never the whole file
    assert sum(chunks) == out.bytes


class FailingStorage(MemoryStorage):
    """Fails the second put begun at its first chunk (a storage outage midway through the walk)."""

    puts = 0

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        self.puts += 1
        if self.puts == 2:
            async for _ in chunks:
                raise OSError("the object store went away")
        return await super().put(key, chunks)


async def test_a_storage_failure_leaves_no_file_and_the_batch_unfinalized() -> None:
    n = IDS_CHUNK
    kinds: list[str | None] = ["completed" if i % 2 else None for i in range(n)]
    store, index, storage = store_of(kinds), FakeFileIndex(), FailingStorage()
    with pytest.raises(OSError, match="went away"):
        await finalize(store, index, storage, JOB)  # type: ignore[arg-type]
    assert storage.puts == 2
    assert storage.objects == {} and index.records == {} and store.finalized is None


async def test_a_batch_not_settled_is_refused() -> None:
    store = store_of(["completed"], state="running", stop=None)
    with pytest.raises(InvalidInput, match="running"):
        await finalize(store, FakeFileIndex(), MemoryStorage(), JOB)  # type: ignore[arg-type]
