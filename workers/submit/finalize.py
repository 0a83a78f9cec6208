"""A settled API batch's output and error files, streamed from Redis into the file storage. STUB."""

from __future__ import annotations

from schemas.records import FileRecord
from workers.files.storage import FileStorage
from workers.store.files import FileIndex
from workers.store.jobstore import Store


async def finalize(
    store: Store, index: FileIndex, storage: FileStorage, job_id: str
) -> tuple[FileRecord | None, FileRecord | None]:
    """Write the batch's output file (its completed requests) and error file (the failed, cancelled and
    expired ones), in input order, OpenAI's line formats; record them (``FileIndex``) and the job finalized.
    None for a file with no line. Call only for a settled job holding its finalize lock."""
    raise NotImplementedError
