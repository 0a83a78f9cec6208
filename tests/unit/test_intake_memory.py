"""Intake's peak memory is flat in the input file's size: a 20,000-line file peaks at well under 3x a 2,000-line
one (the custom ids are the only thing kept per line), measured with tracemalloc over the whole intake."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import pytest

from tests.factories import batch_meta, input_record, request_line
from tests.fakes import FakeBatchStore, FakeProducer, MemoryStorage
from workers.settings import Settings
from workers.submit.intake import intake


def file_of(n: int) -> bytes:
    prompt = "Which of these statements about thermodynamics is correct? " * 6  # ~360 characters, as MMLU's
    return b"".join(request_line(f"request-{i:06d}", content=f"{prompt} ({i})") + b"\n" for i in range(n))


async def peak_of(n: int) -> int:
    """The peak traced memory of one intake of an ``n``-line file (the file itself stored before tracing)."""
    data = file_of(n)
    store = FakeBatchStore(batch_meta(f"batch_m{n}"), keep_ids=False)
    producer = FakeProducer(keep=False)
    storage = MemoryStorage({"file-in": data})
    tracemalloc.start()
    try:
        state = await intake(producer, store, storage, Settings(), f"batch_m{n}", input_record(len(data)))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state == "running" and producer.count == n and store.id_count == n
    return peak


async def test_peak_memory_is_flat_in_the_file_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    await peak_of(200)  # one-time allocations (validators, the thread pool) out of the way
    small, large = await peak_of(2_000), await peak_of(20_000)
    ratio = large / small
    print(f"intake peak memory: 2,000 lines {small / 1e6:.2f} MB, 20,000 lines {large / 1e6:.2f} MB, ratio {ratio:.2f}")
    assert len(file_of(20_000)) > 9 * len(file_of(2_000))  # the files do differ ~10x
    assert ratio < 3
