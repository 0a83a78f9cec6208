"""Stored files' metadata in Redis (``schemas.records.FileRecord``) and each owner's index of them; the bytes
are in the file storage (``workers.files``). STUB: signatures fixed, bodies to come."""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

from schemas.records import FileRecord


class FileIndex:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def add(self, record: FileRecord) -> None:
        raise NotImplementedError

    async def get(self, file_id: str) -> FileRecord | None:
        raise NotImplementedError

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
        raise NotImplementedError

    async def delete(self, file_id: str) -> FileRecord | None:
        """Remove the record and its index entry; the record, or None when there was none."""
        raise NotImplementedError
