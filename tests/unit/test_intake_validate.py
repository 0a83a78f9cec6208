"""Intake's validation pass: every bad line of a batch's input file as the error OpenAI reports for it (code,
line, param), the 1,000-error cap, duplicates, the file's limits; a failed file registers and publishes nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.factories import batch_meta, input_record, request_line
from tests.fakes import FakeBatchStore, FakeProducer, MemoryStorage
from tests.helpers import until
from workers.settings import ApiSettings, Settings
from workers.submit.intake import intake
from workers.submit.validate import MAX_ERRORS

JOB = "batch_v"


# every test: tempfile writes in a directory of its own, checked empty after (intake must not leave its copy)
pytestmark = pytest.mark.usefixtures("private_tmp")


def settings(max_lines: int = 50_000) -> Settings:
    return Settings(max_prompt_chars=1000, max_tokens=100, api=ApiSettings(max_file_lines=max_lines))


async def run(lines: list[bytes], s: Settings | None = None, **store_kw: object) -> tuple[str, FakeBatchStore]:
    data = b"\n".join(lines) + b"\n"
    store = FakeBatchStore(batch_meta(JOB), **store_kw)  # type: ignore[arg-type]
    producer = FakeProducer()
    state = await intake(
        producer, store, MemoryStorage({"file-in": data}), s or settings(), JOB, input_record(len(data))
    )  # type: ignore[arg-type]
    if state == "failed":
        assert producer.sent == [] and store.ids == [] and store.secret is None
    return state, store


async def test_each_kind_of_bad_line_gets_its_code_line_and_param() -> None:
    lines = [
        request_line("a"),  # 1: good
        b"{not json",  # 2
        json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions"}).encode(),  # 3: no body
        request_line("c").replace(b"/v1/chat/completions", b"/v1/embeddings"),  # 4
        request_line("d", max_tokens=0),  # 5
        b"   ",  # 6: blank, skipped
        request_line("a"),  # 7: duplicate
        b"\xff\xfe not utf-8",  # 8
        b"[1, 2]",  # 9
        request_line("e", content="x" * 1001),  # 10: over max_prompt_chars
        request_line("f", content="\ud800"),  # 11: json.loads takes a lone surrogate, no UTF-8 can carry it
        request_line("g", max_tokens=101),  # 12: over max_tokens
        json.dumps({"id": "h", "prompt": "Hi"}).encode(),  # 13: the CLI's simple form, not the Batch API's
    ]
    state, store = await run(lines)
    assert state == "failed" and store.errors is not None
    got = [(e.line, e.code, e.param) for e in store.errors]
    assert got == [
        (2, "invalid_json_line", None),
        (3, "missing_required_parameter", "body"),
        (4, "mismatched_endpoint", "url"),
        (5, "invalid_request", "body.max_tokens"),
        (7, "duplicate_custom_id", "custom_id"),
        (8, "invalid_json_line", None),
        (9, "invalid_json_line", None),
        (10, "invalid_request", "body"),
        (11, "invalid_json_line", None),
        (12, "invalid_request", "body"),
        (13, "missing_required_parameter", "custom_id"),
    ]
    msgs = {e.line: e.message for e in store.errors}
    assert "parseable as valid JSON" in msgs[2] and "column 2" in msgs[2]
    assert "'body'" in msgs[3]
    assert "/v1/embeddings" in msgs[4] and "/v1/chat/completions" in msgs[4]
    assert "max_tokens" in msgs[5]
    assert "'a'" in msgs[7]
    assert "UTF-8" in msgs[8]
    assert "JSON list" in msgs[9]
    assert "over the limit of 1000" in msgs[10]
    assert "hex escape" in msgs[11]
    assert "over the limit of 100" in msgs[12]
    assert "'method', 'url', 'body'" in msgs[13] and "thinkroute submit" in msgs[13]
    assert store.meta.failed_reason == store.reason
    assert store.reason is not None and store.reason.startswith("the input file has 11 error(s); the first: line 2:")


async def test_a_request_too_large_for_the_broker_is_refused_at_validation() -> None:
    lines = [request_line("small", content="x" * 10), request_line("big", content="x" * 900)]
    store = FakeBatchStore(batch_meta(JOB))
    data = b"\n".join(lines)
    producer = FakeProducer(max_request_size=16 * 1024 + 1000)  # 1,000 bytes left for a prompt message
    state = await intake(producer, store, MemoryStorage({"file-in": data}), settings(), JOB, input_record(len(data)))  # type: ignore[arg-type]
    assert state == "failed" and store.errors is not None
    assert [(e.line, e.code, e.param) for e in store.errors] == [(2, "invalid_request", "body")]
    assert (
        "cannot be published" in store.errors[0].message and "over the limit of 1000 bytes" in store.errors[0].message
    )


async def test_errors_are_capped_at_1000_with_the_rest_counted_in_the_last() -> None:
    state, store = await run([b"nope"] * (MAX_ERRORS + 500) + [request_line("ok")])
    assert state == "failed" and store.errors is not None
    assert len(store.errors) == MAX_ERRORS
    assert [e.line for e in store.errors] == list(range(1, MAX_ERRORS + 1))
    assert store.errors[-1].message.endswith("(and 500 more errors, not listed)")
    assert "more errors" not in store.errors[-2].message
    assert store.reason is not None and "1500 error(s)" in store.reason


async def test_every_repeat_of_a_custom_id_is_an_error_and_the_first_is_kept() -> None:
    lines = [request_line(c) for c in ("a", "b", "a", "c", "b", "a")]
    state, store = await run(lines)
    assert state == "failed" and store.errors is not None
    assert [(e.line, e.code) for e in store.errors] == [(n, "duplicate_custom_id") for n in (3, 5, 6)]


async def test_more_lines_than_allowed_stop_the_reading_at_the_first_over() -> None:
    lines = [request_line(str(i)) for i in range(5)] + [b"junk"]
    state, store = await run(lines, settings(max_lines=3))
    assert state == "failed" and store.errors is not None
    assert [(e.line, e.code) for e in store.errors] == [(4, "too_many_requests")]
    assert "more than 3 requests" in store.errors[0].message


async def test_a_file_of_blank_lines_is_empty() -> None:
    state, store = await run([b"", b"  ", b"\r"])
    assert state == "failed" and store.errors is not None
    assert [(e.line, e.code) for e in store.errors] == [(None, "empty_file")]


async def test_a_file_in_another_format_is_named() -> None:
    state, store = await run([b"BZh91AY&SY rest of a bzip2 stream"])
    assert state == "failed" and store.errors is not None
    assert [(e.line, e.code) for e in store.errors] == [(1, "invalid_json_line")]
    assert "bzip2" in store.errors[0].message


async def test_a_cancel_during_validation_stops_it_without_failing_the_batch() -> None:
    state, store = await run([request_line(str(i)) for i in range(1200)], renewals=0)
    assert state == "cancelled"
    assert store.errors is None and store.ids == [] and store.secret is None


async def test_a_batch_no_longer_validating_is_left_as_it_is() -> None:
    store = FakeBatchStore(batch_meta(JOB, state="cancelled"))
    storage = MemoryStorage()  # no input object: it must not be read
    assert await intake(FakeProducer(), store, storage, settings(), JOB, input_record(0)) == "cancelled"  # type: ignore[arg-type]


async def test_an_input_file_gone_from_the_storage_fails_the_batch() -> None:
    store = FakeBatchStore(batch_meta(JOB))
    state = await intake(FakeProducer(), store, MemoryStorage(), settings(), JOB, input_record(10))  # type: ignore[arg-type]
    assert state == "failed" and store.errors is not None
    assert [e.code for e in store.errors] == ["intake_failed"]
    assert store.reason == "the batch's input file is no longer stored"


async def test_a_server_shutdown_during_validation_fails_the_batch_and_removes_the_copy() -> None:
    """(the fixture checks the copy is gone)"""
    data = b"\n".join(request_line(str(i)) for i in range(20 * 500))
    store = FakeBatchStore(batch_meta(JOB))
    task = asyncio.create_task(
        intake(FakeProducer(), store, MemoryStorage({"file-in": data}), settings(), JOB, input_record(len(data)))  # type: ignore[arg-type]
    )
    await until(lambda: store.renewed >= 2)  # two chunks validated, more to come
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.meta.state == "failed" and store.ids == []
    assert store.reason == "the server stopped while reading the input file; create the batch again"
