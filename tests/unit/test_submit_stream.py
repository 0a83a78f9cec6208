"""``thinkroute submit|run``'s streamed input (``workers.submit.stream``), without servers: the check pass refuses
a file with one bad line anywhere (the last one too) before anything is recorded, the publishing pass reads the
requests lazily (never more than a chunk ahead of what was sent), in input order, whatever the chunk size, each
prompt with its own plan; and peak memory is flat in the file's size."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.messages import PromptMessage, PromptPlan
from schemas.records import JobMeta
from tests.factories import request_line
from tests.fakes import FakeProducer
from workers.store.integrity import mac_matches
from workers.submit import jobs, stream
from workers.submit.batchfile import InputRequest
from workers.submit.stream import check_file, good_requests, submit_file, todo_ids, todo_requests

LIMIT = 10_000


def simple(cid: str, prompt: str = "What is 2+2?") -> bytes:
    return json.dumps({"id": cid, "prompt": prompt}).encode()


def write(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


class Store:
    """What ``submit_file`` calls; the request ids read as ``Store.register_job`` reads them (an iterator, kept
    only when ``keep``), and the secret, to check the MACs."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.ids: list[str] = []
        self.id_count = 0
        self.secret = b""
        self.started = False

    async def register_job(self, meta: JobMeta, request_ids: Iterator[str], secret: bytes) -> None:
        self.secret = secret
        for rid in request_ids:
            self.id_count += 1
            if self.keep:
                self.ids.append(rid)

    async def renew_lease(self, job_id: str) -> bool:
        return True

    async def start_job(self, job_id: str) -> str:
        self.started = True
        return "running"


class Counted:
    """An iterator over requests that counts how many were taken (``taken``)."""

    def __init__(self, inner: Iterator[InputRequest]) -> None:
        self.inner = inner
        self.taken = 0

    def __iter__(self) -> Counted:
        return self

    def __next__(self) -> InputRequest:
        req = next(self.inner)
        self.taken += 1
        return req


class Watching(FakeProducer):
    """Records, at each send, how many requests the submitter had read ahead of what it sent."""

    def __init__(self, source: Counted) -> None:
        super().__init__()
        self.source = source
        self.ahead = 0

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        fut = await super().send(topic, value, key)
        self.ahead = max(self.ahead, self.source.taken - self.count)
        return fut


def test_one_bad_line_at_the_end_of_a_file_is_found_before_anything_is_recorded(tmp_path: Path) -> None:
    lines = [simple(f"p{i}") for i in range(1200)] + [b'{"id": "last", "prompt": ""}']
    checked = check_file(write(tmp_path / "in.jsonl", lines), LIMIT)
    assert (checked.bad, len(checked.ids)) == (1, 1200)
    (error,) = checked.errors
    assert error.line == 1201
    assert list(checked.ids)[:3] == ["p0", "p1", "p2"] and checked.ids["p1199"] == 1200


def test_the_check_pass_keeps_the_first_errors_and_counts_them_all(tmp_path: Path) -> None:
    lines = [simple("a"), *[b"{oops"] * 30, simple("a"), simple("b"), simple("x" * 10, "y" * 20)]
    checked = check_file(write(tmp_path / "in.jsonl", lines), 15)
    assert checked.bad == 32 and len(checked.errors) == stream.SHOWN
    assert str(checked.errors[0]).startswith("line 2: not valid JSON")
    assert list(checked.ids) == ["a", "b"]  # the duplicate (line 32) and the over-long prompt are bad


def test_unpublishable_lines_are_bad_lines_of_the_check(tmp_path: Path) -> None:
    lines = [simple("ok"), simple("big", "z" * 5000)]
    checked = check_file(write(tmp_path / "in.jsonl", lines), LIMIT, max_bytes=stream_limit(4000))
    assert list(checked.ids) == ["ok"] and checked.bad == 1
    assert checked.errors[0].line == 2 and "over the limit" in str(checked.errors[0])


def test_the_check_and_read_batch_find_the_same_bad_lines(tmp_path: Path) -> None:
    """One reading of a file for both: a custom id is taken by its first line even when that line cannot be
    published, so a second line with it is a duplicate, not a stand-in."""
    from workers.submit.batchfile import read_batch

    lines = [simple("big", "z" * 5000), simple("big"), b"{oops", simple("ok"), simple("ok")]
    path = write(tmp_path / "in.jsonl", lines)
    checked = check_file(path, LIMIT, max_bytes=stream_limit(4000))
    assert list(checked.ids) == ["ok"] and checked.ids["ok"] == 4
    assert [(e.line, str(e).split(": ", 1)[1][:13]) for e in checked.errors] == [
        (1, "the prompt me"),
        (2, "duplicate id "),
        (3, "not valid JSO"),
        (5, "duplicate id "),
    ]
    good, bad = read_batch(path, LIMIT)
    assert [r.custom_id for r in good] == ["big", "ok"] and [e.line for e in bad] == [2, 3, 5]


def stream_limit(budget: int) -> int:
    from workers.submit.encode import ROUTING_HEADROOM

    return budget + ROUTING_HEADROOM


def test_the_second_pass_reads_back_the_kept_lines_only(tmp_path: Path) -> None:
    lines = [simple("a", "first"), b"[1]", simple("b"), simple("a", "again"), simple("c")]
    checked = check_file(write(tmp_path / "in.jsonl", lines), LIMIT)
    got = [(r.custom_id, r.line) for r in good_requests(checked, LIMIT)]
    assert got == [("a", 1), ("b", 3), ("c", 5)]  # the duplicate of "a" (line 4) is not read back
    assert [r.custom_id for r in todo_requests(checked, LIMIT, None, {"b"})] == ["a", "c"]
    assert todo_ids(checked, {"b"}) == ["a", "c"]


def test_a_second_pass_stopped_early_closes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    opened: list[object] = []
    real_open = builtins.open

    def tracking_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        f = real_open(*args, **kwargs)
        opened.append(f)
        return f

    checked = check_file(write(tmp_path / "in.jsonl", [simple("a"), simple("b"), simple("c")]), LIMIT)
    monkeypatch.setattr(builtins, "open", tracking_open)
    requests = good_requests(checked, LIMIT)
    assert next(requests).custom_id == "a"
    assert len(opened) == 1 and not opened[0].closed  # type: ignore[attr-defined]
    requests.close()  # what islice's caller leaves behind when it stops reading
    assert opened[0].closed  # type: ignore[attr-defined]


async def submitted(path: Path, chunk: int, planned: bool) -> tuple[Store, Watching, Counted, list[str]]:
    checked = check_file(path, LIMIT, job_id="job-s")
    ids = todo_ids(checked)
    plans = [PromptPlan(route="reasoning" if i % 3 else "direct") for i in range(len(ids))]
    source = Counted(good_requests(checked, LIMIT))
    store, producer = Store(), Watching(source)
    saved = stream.CHUNK
    stream.CHUNK = chunk  # type: ignore[misc]
    try:
        plan = (None, plans) if planned else None
        meta = await submit_file(producer, store, "p", checked, source, ids, "in.jsonl", plan)  # type: ignore[arg-type]
    finally:
        stream.CHUNK = saved  # type: ignore[misc]
    assert meta.state == "running" and meta.total == len(ids) and store.started
    return store, producer, source, ids


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 120), chunk=st.integers(1, 50), planned=st.booleans())
async def test_every_prompt_is_published_once_in_input_order_whatever_the_chunk(
    tmp_path: Path, n: int, chunk: int, planned: bool
) -> None:
    path = write(tmp_path / f"in-{n}.jsonl", [simple(f"q{i}", f"question {i}") for i in range(n)])
    store, producer, source, _ = await submitted(path, chunk, planned)
    assert store.ids == [f"job-s/q{i}" for i in range(n)] == [key.decode() for _, key, _ in producer.sent]
    assert source.taken == n and producer.ahead <= chunk  # read a chunk at a time, never more ahead
    msgs = [PromptMessage.model_validate_json(value) for _, _, value in producer.sent]
    assert [(m.line, m.custom_id, m.body.messages[-1].content) for m in msgs] == [
        (i + 1, f"q{i}", f"question {i}") for i in range(n)
    ]
    assert all(mac_matches(m, store.secret) for m in msgs)
    routes = [m.plan.route if m.plan else None for m in msgs]
    assert routes == ([("reasoning" if i % 3 else "direct") for i in range(n)] if planned else [None] * n)


async def test_a_file_changed_under_the_submit_fails_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "in.jsonl", [simple(f"q{i}") for i in range(5)])
    checked = check_file(path, LIMIT, job_id="job-c")
    write(path, [simple(f"q{i}") for i in range(3)])  # shorter now

    class Failing(Store):
        async def fail_job(self, job_id: str, reason: str) -> bool:
            self.reason = reason
            return True

    store = Failing()
    with pytest.raises(jobs.SubmitFailed, match="3 requests to publish, 5 were checked"):
        await submit_file(FakeProducer(), store, "p", checked, good_requests(checked, LIMIT), todo_ids(checked), "f")  # type: ignore[arg-type]
    assert not store.started


async def peak_of(tmp_path: Path, n: int) -> int:
    prompt = "Which of these statements about thermodynamics is correct? " * 6
    path = write(tmp_path / f"m{n}.jsonl", [request_line(f"request-{i:06d}", f"{prompt} ({i})") for i in range(n)])
    tracemalloc.start()
    try:
        checked = check_file(path, LIMIT, job_id=f"job-m{n}")
        ids = todo_ids(checked)
        store, producer = Store(keep=False), FakeProducer(keep=False)
        await submit_file(producer, store, "p", checked, good_requests(checked, LIMIT), ids, "m")  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert producer.count == n and store.id_count == n
    return peak


async def test_peak_memory_of_check_and_submit_is_flat_in_the_file_size(tmp_path: Path) -> None:
    await peak_of(tmp_path, 200)  # one-time allocations out of the way
    small, large = await peak_of(tmp_path, 2_000), await peak_of(tmp_path, 20_000)
    ratio = large / small
    print(f"check+submit peak: 2,000 lines {small / 1e6:.2f} MB, 20,000 lines {large / 1e6:.2f} MB, ratio {ratio:.2f}")
    assert ratio < 3  # 10x the lines; what grows is the ids (about 100 bytes a line)
