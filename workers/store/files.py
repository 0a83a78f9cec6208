"""Stored files' metadata in Redis (``schemas.records.FileRecord``) and each owner's index of them; the bytes
are in the file storage (``workers.files``).

Two keys per file, in two slots of a Redis Cluster (so never one script or MULTI over both, only pipelines
without a transaction): the record ``tr:file:{<id>}`` (JSON) and the owner's index ``tr:owner:{<owner>}:files``,
a sorted set of file ids by ``created_at``, ties by id (Redis orders equal scores by member). ``add`` writes the
record before the index entry and ``delete`` removes the record first (GETDEL: of two concurrent deletes one
gets the record), so an index entry may outlive its record for a moment; ``list`` skips such entries.

``list`` reads the index in pages of at most ``PAGE`` entries, each page one atomic step (``_PAGE_LUA``: the
cursor's rank and the entries after it, on the one key of the index), and fetches those records; with a purpose
filter it reads pages until it has the page asked for, never the whole index at once.
"""

from __future__ import annotations

import builtins
import logging
from typing import Any, Literal

from schemas.records import FileRecord
from workers.store.client import RedisClient
from workers.store.keys import file_key, owner_files_key

log = logging.getLogger(__name__)

PAGE = 256  # index entries (and records) read per round trip at most

# KEYS: an owner's files index. ARGV: cursor id ('' for the first page), cursor score, count, desc (0|1).
# The `count` entries after the cursor (or from the start) as {id, score, ...}. A cursor that left the index
# since it was read (its file was deleted) is replaced by its score: the entries strictly after it.
_PAGE_LUA = """
local n = tonumber(ARGV[3])
local desc = ARGV[4] == '1'
if ARGV[1] == '' then
  if desc then return redis.call('ZREVRANGE', KEYS[1], 0, n - 1, 'WITHSCORES') end
  return redis.call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
end
if desc then
  local r = redis.call('ZREVRANK', KEYS[1], ARGV[1])
  if r then return redis.call('ZREVRANGE', KEYS[1], r + 1, r + n, 'WITHSCORES') end
  return redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '-inf', 'WITHSCORES', 'LIMIT', 0, n)
end
local r = redis.call('ZRANK', KEYS[1], ARGV[1])
if r then return redis.call('ZRANGE', KEYS[1], r + 1, r + n, 'WITHSCORES') end
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, n)
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FileIndex:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._page = redis.register_script(_PAGE_LUA)

    async def add(self, record: FileRecord) -> None:
        """Record a file and index it under its owner (a record of the same id is replaced)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(file_key(record.id), record.model_dump_json())
            pipe.zadd(owner_files_key(record.owner), {record.id: record.created_at})
            await pipe.execute()

    async def get(self, file_id: str) -> FileRecord | None:
        raw = await self.redis.get(file_key(file_id))
        return None if raw is None else FileRecord.model_validate_json(raw)

    async def list(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "desc",
    ) -> tuple[list[FileRecord], bool]:
        """The owner's files by created_at, after the file ``after`` (exclusive); and whether more follow."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        key = owner_files_key(owner)
        cursor, score = "", 0.0
        if after is not None:
            found = await self.redis.zscore(key, after)
            if found is None:
                return [], False
            cursor, score = after, float(found)
        out: list[FileRecord] = []
        while True:
            want = limit + 1 - len(out)  # one more than asked: whether more follow
            count = min(PAGE, max(want, 16) if purpose is not None else want)
            flat = await self._page(keys=[key], args=[cursor, repr(score), count, 1 if order == "desc" else 0])
            entries = [(_text(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
            for record in await self._records([file_id for file_id, _ in entries]):
                if record is None or record.owner != owner:
                    continue  # deleted since the page was read (or not ours: never shown)
                if purpose is not None and record.purpose != purpose:
                    continue
                out.append(record)
                if len(out) > limit:
                    return out[:limit], True
            if len(entries) < count:
                return out, False
            cursor, score = entries[-1]

    async def _records(self, file_ids: builtins.list[str]) -> builtins.list[FileRecord | None]:
        if not file_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:  # one GET per slot: no MGET across files
            for file_id in file_ids:
                pipe.get(file_key(file_id))
            raws = await pipe.execute()
        return [None if raw is None else FileRecord.model_validate_json(raw) for raw in raws]

    async def delete(self, file_id: str) -> FileRecord | None:
        """Remove the record and its index entry; the record, or None when there was none."""
        raw = await self.redis.getdel(file_key(file_id))
        if raw is None:
            return None
        record = FileRecord.model_validate_json(raw)
        await self.redis.zrem(owner_files_key(record.owner), file_id)
        return record
