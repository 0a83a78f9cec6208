"""LocalStorage: round trips, chunked reads, atomic puts (a failed or cancelled one leaves nothing), key checks,
modes; the file ids; open_storage's choice."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from workers.errors import ConfigError
from workers.files.ids import check_key, new_file_id
from workers.files.local import LocalStorage
from workers.files.s3 import S3Storage, parse_url
from workers.files.storage import FileStorage, open_storage
from workers.settings import ApiSettings


async def chunks_of(data: bytes, size: int, fail_at: int | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if fail_at is not None and i >= fail_at:
            raise RuntimeError("the source broke")
        yield data[i : i + size]


async def read_all(storage: FileStorage, key: str, chunk_size: int = 1 << 16) -> list[bytes]:
    return [chunk async for chunk in storage.get(key, chunk_size)]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_round_trip_returns_the_size_and_the_same_bytes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    data = os.urandom(300_001)
    key = new_file_id()
    assert await storage.put(key, chunks_of(data, 7_000)) == len(data)
    assert b"".join(await read_all(storage, key)) == data
    assert await storage.put("empty", chunks_of(b"", 10)) == 0
    assert await read_all(storage, "empty") == []


async def test_get_streams_in_chunks_of_the_size_asked(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    data = bytes(range(256)) * 40  # 10,240 bytes
    await storage.put("k", chunks_of(data, 999))
    got = await read_all(storage, "k", chunk_size=4096)
    assert [len(c) for c in got] == [4096, 4096, 2048]
    assert b"".join(got) == data


async def test_a_put_whose_source_fails_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    await storage.put("kept", chunks_of(b"x" * 10, 5))
    with pytest.raises(RuntimeError, match="the source broke"):
        await storage.put("broken", chunks_of(os.urandom(100_000), 10_000, fail_at=50_000))
    assert names(tmp_path / "files") == ["kept"]
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "broken")


async def test_a_cancelled_put_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        started.set()
        await asyncio.Event().wait()  # never set: the put hangs here until cancelled
        yield b"never"

    task = asyncio.create_task(storage.put("stalled", stalls()))
    await asyncio.wait_for(started.wait(), 10)
    assert len(names(tmp_path)) == 1  # the temporary file, written so far
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert names(tmp_path) == []


@pytest.mark.parametrize("key", ["", ".", "..", "../x", "a/b", "/etc/passwd", ".hidden", "a b", "é", "a\x00b"])
async def test_keys_that_are_not_ours_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "files")
    with pytest.raises(ValueError, match="bad file storage key"):
        await storage.put(key, chunks_of(b"x", 1))
    with pytest.raises(ValueError, match="bad file storage key"):
        await read_all(storage, key)
    with pytest.raises(ValueError, match="bad file storage key"):
        await storage.delete(key)
    assert names(tmp_path / "files") == []


def test_file_ids_are_ours_and_distinct() -> None:
    ids = {new_file_id() for _ in range(1000)}
    assert len(ids) == 1000
    for file_id in ids:
        assert check_key(file_id) == file_id
        assert file_id.startswith("file-") and len(file_id) == 29 and int(file_id[5:], 16) >= 0


async def test_delete_removes_and_tolerates_a_missing_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put("k", chunks_of(b"abc", 2))
    await storage.delete("k")
    await storage.delete("k")
    await storage.delete("never-was")
    with pytest.raises(FileNotFoundError):
        await read_all(storage, "k")
    assert names(tmp_path) == []


async def test_the_directory_is_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # the modes are ours, not the umask's
    try:
        wide = tmp_path / "wide"
        wide.mkdir(mode=0o755)
        storage = LocalStorage(wide)
        await storage.put("k", chunks_of(b"secret", 3))
        nested = LocalStorage(tmp_path / "a" / "files")
    finally:
        os.umask(old)
    assert mode(wide) == 0o700 and mode(wide / "k") == 0o600
    assert mode(tmp_path / "a" / "files") == 0o700 and nested.root == tmp_path / "a" / "files"


async def test_a_large_file_streams_back_equal(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert await storage.put("big", chunks_of(data, 65_536)) == len(data)
    digest = hashlib.sha256()
    sizes = set()
    async for chunk in storage.get("big"):
        digest.update(chunk)
        sizes.add(len(chunk))
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert max(sizes) == 65_536


def test_open_storage_picks_the_directory_or_s3(tmp_path: Path) -> None:
    local = open_storage(ApiSettings(), tmp_path)
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "files" and mode(local.root) == 0o700
    chosen = open_storage(ApiSettings(files_dir=tmp_path / "mine"), tmp_path)
    assert isinstance(chosen, LocalStorage) and chosen.root == tmp_path / "mine"
    api = ApiSettings(
        files_url="s3://bucket/some/prefix/",
        s3_endpoint="http://127.0.0.1:1",
        s3_access_key_id="id",
        s3_secret_access_key=SecretStr("secret"),
    )
    s3 = open_storage(api, tmp_path / "unused")
    assert isinstance(s3, S3Storage) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    assert not (tmp_path / "unused").exists()  # no local directory with S3
    with pytest.raises(ConfigError, match="s3://bucket"):
        open_storage(ApiSettings(files_url="gs://bucket"), tmp_path)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://b", ("b", "")),
        ("s3://b/", ("b", "")),
        ("s3://b/p/q", ("b", "p/q")),
        ("s3://my-bucket/x/", ("my-bucket", "x")),
    ],
)
def test_s3_urls_name_a_bucket_and_a_prefix(url: str, expected: tuple[str, str]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["s3://", "s3:///p", "http://b/p", "s3://b/p?x=1", "bucket/p"])
def test_bad_s3_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_url(url)


def test_s3_part_size_below_the_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match="part_size"):
        S3Storage("s3://b", endpoint="http://127.0.0.1:1", part_size=1024)
