"""FileIndex against a real Redis: records, owners' indexes, pages in both orders with an exclusive cursor,
the purpose filter over several index pages, owners isolated; and the same calls as the embedded stack's
restricted Redis user (every command, those of the Lua page script included, is in its ACL)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from redis.asyncio import Redis

import workers.store.files as files_module
from schemas.records import FileRecord
from workers.files.ids import new_file_id
from workers.local.redis_conf import REDIS_USER
from workers.local.services import Service, start_redis
from workers.store.files import FileIndex
from workers.store.keys import file_key, owner_files_key

pytestmark = pytest.mark.integration

T0 = 1_750_000_000.0


def record(owner: str, created_at: float, purpose: Literal["batch", "batch_output"] = "batch") -> FileRecord:
    file_id = new_file_id()
    return FileRecord(
        id=file_id,
        owner=owner,
        filename=f"{file_id}.jsonl",
        purpose=purpose,
        kind="input" if purpose == "batch" else "output",
        bytes=100,
        lines=3,
        created_at=created_at,
        storage_key=file_id,
    )


async def add_all(index: FileIndex, records: list[FileRecord]) -> None:
    for r in records:
        await index.add(r)


def expected_order(records: list[FileRecord], order: str) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.created_at, r.id))
    return [r.id for r in (ordered if order == "asc" else reversed(ordered))]


async def pages(
    index: FileIndex, owner: str, limit: int, order: Literal["asc", "desc"], purpose: str | None = None
) -> list[tuple[list[str], bool]]:
    """Every page from the start, each after the last id of the one before."""
    out: list[tuple[list[str], bool]] = []
    after: str | None = None
    while True:
        got, more = await index.list(owner, purpose=purpose, after=after, limit=limit, order=order)
        out.append(([r.id for r in got], more))
        if not more:
            return out
        after = got[-1].id


def twenty_five(owner: str) -> list[FileRecord]:
    """25 files, the last five created in the same second (ties: by id)."""
    return [record(owner, T0 + min(i, 20)) for i in range(25)]


async def test_add_get_list_delete(redis: Redis, unique: str) -> None:
    index = FileIndex(redis)
    owner = f"alice-{unique}"
    r = record(owner, T0)
    await index.add(r)
    assert await index.get(r.id) == r
    assert await index.list(owner) == ([r], False)
    assert await index.delete(r.id) == r
    assert await index.get(r.id) is None
    assert await index.list(owner) == ([], False)
    assert await index.delete(r.id) is None
    assert await redis.exists(file_key(r.id), owner_files_key(owner)) == 0


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pages_of_ten_across_25_files(redis: Redis, unique: str, order: Literal["asc", "desc"]) -> None:
    index = FileIndex(redis)
    owner = f"pager-{unique}"
    records = twenty_five(owner)
    await add_all(index, records)
    want = expected_order(records, order)
    got = await pages(index, owner, 10, order)
    assert [more for _, more in got] == [True, True, False]
    assert [len(ids) for ids, _ in got] == [10, 10, 5]
    assert [i for ids, _ in got for i in ids] == want
    # the boundaries of has_more, and a cursor in the middle of the ties
    assert await index.list(owner, limit=25, order=order) == (
        sorted(records, key=lambda r: want.index(r.id)),
        False,
    )
    assert (await index.list(owner, limit=24, order=order))[1] is True
    tail, more = await index.list(owner, after=want[21], limit=10, order=order)
    assert ([r.id for r in tail], more) == (want[22:], False)
    assert await index.list(owner, after=want[-1], order=order) == ([], False)


async def test_a_cursor_not_in_the_owners_index_gives_an_empty_page(redis: Redis, unique: str) -> None:
    index = FileIndex(redis)
    mine, theirs = record(f"a-{unique}", T0), record(f"b-{unique}", T0)
    await add_all(index, [mine, theirs])
    assert await index.list(mine.owner, after="file-" + "0" * 24) == ([], False)
    assert await index.list(mine.owner, after=theirs.id) == ([], False)
    assert await index.list(mine.owner, after=mine.id) == ([], False)


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_the_purpose_filter_pages_right_over_small_index_pages(
    redis: Redis, unique: str, monkeypatch: pytest.MonkeyPatch, order: Literal["asc", "desc"]
) -> None:
    index = FileIndex(redis)
    owner = f"filter-{unique}"
    # every third file an output: 8 outputs among 25, spread over many index pages of 4
    records = [record(owner, T0 + i, "batch_output" if i % 3 == 1 else "batch") for i in range(25)]
    await add_all(index, records)
    monkeypatch.setattr(files_module, "PAGE", 4)
    read: list[int] = []
    script = index._page

    async def counted(*, keys: list[str], args: list[Any]) -> Any:
        read.append(int(args[2]))
        return await script(keys=keys, args=args)

    monkeypatch.setattr(index, "_page", counted)
    outputs = [r for r in records if r.purpose == "batch_output"]
    got = await pages(index, owner, 3, order, purpose="batch_output")
    assert [i for ids, _ in got for i in ids] == expected_order(outputs, order)
    assert [more for _, more in got] == [True, True, False]
    assert max(read) == 4  # bounded pages, never the whole index
    inputs, more = await index.list(owner, purpose="batch", limit=100, order=order)
    assert [r.id for r in inputs] == expected_order([r for r in records if r.purpose == "batch"], order)
    assert more is False
    assert await index.list(owner, purpose="nothing-has-it") == ([], False)


async def test_owners_are_isolated(redis: Redis, unique: str) -> None:
    index = FileIndex(redis)
    a, b = f"a-{unique}", f"b-{unique}"
    a_files = [record(a, T0 + i) for i in range(5)]
    b_files = [record(b, T0 + i + 0.5) for i in range(5)]
    await add_all(index, a_files + b_files)
    assert [r.id for r in (await index.list(a))[0]] == expected_order(a_files, "desc")
    assert [r.id for r in (await index.list(b))[0]] == expected_order(b_files, "desc")
    # an entry of b's file in a's index (a bug elsewhere) is still never shown to a
    await redis.zadd(owner_files_key(a), {b_files[0].id: T0 + 99})
    assert [r.id for r in (await index.list(a))[0]] == expected_order(a_files, "desc")
    # get does not check the owner (the API does)
    assert await index.get(b_files[0].id) == b_files[0]
    assert await index.delete(b_files[1].id) == b_files[1]
    assert len((await index.list(a))[0]) == 5 and len((await index.list(b))[0]) == 4


async def test_entries_whose_record_is_gone_are_skipped_and_paging_stays_right(redis: Redis, unique: str) -> None:
    index = FileIndex(redis)
    owner = f"dangling-{unique}"
    records = [record(owner, T0 + i) for i in range(12)]
    await add_all(index, records)
    gone = {records[3].id, records[4].id, records[10].id}
    await redis.delete(*(file_key(i) for i in gone))  # as a crash between delete's two steps leaves them
    kept = [r for r in records if r.id not in gone]
    got = await pages(index, owner, 4, "asc")
    assert [i for ids, _ in got for i in ids] == expected_order(kept, "asc")
    assert [more for _, more in got] == [True, True, False]


@pytest.mark.parametrize("desc", [0, 1])
async def test_a_page_after_a_cursor_that_was_deleted_starts_after_its_score(
    redis: Redis, unique: str, desc: int
) -> None:
    index = FileIndex(redis)
    owner = f"moved-{unique}"
    records = [record(owner, T0 + i) for i in range(6)]
    await add_all(index, records)
    cursor = records[2]
    await index.delete(cursor.id)
    flat = await index._page(keys=[owner_files_key(owner)], args=[cursor.id, repr(cursor.created_at), 10, desc])
    ids = [x.decode() for x in flat[::2]]
    assert ids == ([r.id for r in records[3:]] if not desc else [r.id for r in reversed(records[:2])])


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    password = "pw-" + os.urandom(8).hex()
    svc = start_redis(tmp_path_factory.mktemp("acl-redis"), user=REDIS_USER, password=password)
    yield svc, password
    svc.stop()


@pytest.fixture
async def restricted(acl_redis: tuple[Service, str]) -> AsyncIterator[Redis]:
    svc, password = acl_redis
    client = Redis.from_url(f"redis://{REDIS_USER}:{password}@{svc.address}/0")
    yield client
    await client.aclose()


async def test_every_call_is_allowed_to_the_restricted_user(restricted: Redis, unique: str, tmp_path: Path) -> None:
    index = FileIndex(restricted)
    owner = f"acl-{unique}"
    records = [record(owner, T0 + i, "batch_output" if i % 2 else "batch") for i in range(7)]
    await add_all(index, records)
    for order in ("asc", "desc"):
        got = await pages(index, owner, 2, order, purpose="batch")
        assert [i for ids, _ in got for i in ids] == expected_order(records[::2], order)
    gone = records[1]
    assert await index.delete(gone.id) == gone
    # the deleted-cursor branch of the page script, both orders
    for desc in (0, 1):
        await index._page(keys=[owner_files_key(owner)], args=[gone.id, repr(gone.created_at), 2, desc])
    assert await index.list(owner, after=records[0].id, limit=1, order="asc") == ([records[2]], True)
    assert await index.get(gone.id) is None
