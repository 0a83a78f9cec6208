"""A settled API batch's output and error files, streamed from Redis into the file storage.

One walk over the job's request ids in input order, a chunk of results at a time: a completed result is a
line of the output file, a failed one a line of the error file (both ``workers.submit.output.output_line``:
OpenAI's line format plus our ``route``), and a request with no result (the batch was cancelled or expired
before it ran) an error line with ``error.code`` ``batch_cancelled`` or ``batch_expired``. Each file is
written while it is walked: its lines are gathered into ~64 KB chunks that a ``FileStorage.put`` running
beside the walk consumes through a small queue, so memory holds one chunk of results and a few chunks of
bytes. A file is only begun at its first line: a file with no line is not written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Final, Literal

from schemas.batch import BatchError, BatchOutputLine
from schemas.records import FileRecord, JobMeta, RequestResult
from workers.errors import InvalidInput, NotFound
from workers.files.ids import new_file_id
from workers.files.storage import FileStorage
from workers.store.files import FileIndex
from workers.store.jobstore import Store
from workers.submit.output import in_order, output_line

log = logging.getLogger(__name__)

IDS_CHUNK: Final = 1000  # request ids (and results) read per step
BYTES_CHUNK: Final = 1 << 16  # bytes handed to the storage per chunk
QUEUED_CHUNKS: Final = 4  # chunks waiting for the storage, at most
SETTLED: Final = ("done", "cancelled", "expired")
STOPPED: Final = {
    "cancelled": ("batch_cancelled", "This request was not run: the batch was cancelled before it started."),
    "expired": ("batch_expired", "This request was not run: the batch's completion window ended before it started."),
}
_END: Final = b""


class _File:
    """One output or error file being written: lines gathered into chunks, a ``put`` started at the first."""

    def __init__(self, storage: FileStorage, kind: Literal["output", "error"], meta: JobMeta, owner: str) -> None:
        self.storage = storage
        self.kind = kind
        self.id = new_file_id()
        self.meta = meta
        self.owner = owner
        self.lines = 0
        self.buffer = bytearray()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUED_CHUNKS)
        self.put: asyncio.Task[int] | None = None

    async def write(self, line: bytes) -> None:
        self.buffer += line
        self.lines += 1
        if len(self.buffer) >= BYTES_CHUNK:
            await self._send(bytes(self.buffer))
            self.buffer.clear()

    async def _send(self, chunk: bytes) -> None:
        """Hand a chunk (``_END``: the end) to the put, starting it first; the put's error if it stopped."""
        if self.put is None:
            self.put = asyncio.create_task(self.storage.put(self.id, self._chunks()))
        offer = asyncio.ensure_future(self.queue.put(chunk))
        try:
            await asyncio.wait({offer, self.put}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not offer.done():
                offer.cancel()
        if offer.cancelled():
            self.put.result()  # its error
            raise RuntimeError(f"the storage stopped reading {self.kind} file {self.id} before its end")

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.queue.get():
            yield chunk

    async def close(self) -> FileRecord | None:
        """The end of the file: its record once stored, None when it had no line."""
        if not self.lines:
            return None
        if self.buffer:
            await self._send(bytes(self.buffer))
            self.buffer.clear()
        await self._send(_END)
        assert self.put is not None
        size = await self.put
        return FileRecord(
            id=self.id,
            owner=self.owner,
            filename=f"{self.meta.job_id}_{self.kind}.jsonl",
            purpose="batch_output",
            kind=self.kind,
            bytes=size,
            lines=self.lines,
            created_at=time.time(),
            storage_key=self.id,
            job_id=self.meta.job_id,
        )

    async def abort(self) -> None:
        """Stop its put (a failed put leaves no object) and remove an object already stored."""
        if self.put is not None:
            self.put.cancel()
            await asyncio.gather(self.put, return_exceptions=True)
            await self.storage.delete(self.id)


async def finalize(
    store: Store, index: FileIndex, storage: FileStorage, job_id: str
) -> tuple[FileRecord | None, FileRecord | None]:
    """Write the batch's output file (its completed requests) and error file (the failed, cancelled and
    expired ones), in input order, OpenAI's line formats; record them (``FileIndex``) and the job finalized.
    None for a file with no line. Call only for a settled job holding its finalize lock."""
    meta = await store.job_meta(job_id)
    if meta is None:
        raise NotFound(f"batch {job_id} does not exist")
    if meta.state not in SETTLED:
        raise InvalidInput(f"batch {job_id} is {meta.state}, not settled: its files cannot be written yet")
    if meta.owner is None:
        raise InvalidInput(f"job {job_id} was not created through the API: it has no output files")
    output, error = _File(storage, "output", meta, meta.owner), _File(storage, "error", meta, meta.owner)
    code, message = STOPPED.get(meta.stop or meta.state, STOPPED["cancelled"])
    try:
        async for ids, results in in_order(store, job_id, IDS_CHUNK):
            for completed, line in await asyncio.to_thread(_encode, job_id, ids, results, code, message):
                await (output if completed else error).write(line)
        records = await output.close(), await error.close()
    except BaseException:
        await output.abort()
        await error.abort()
        raise
    for record in records:
        if record is not None:
            await index.add(record)
    out, err = records
    await store.mark_finalized(job_id, out.id if out else None, err.id if err else None)
    log.info("batch %s finalized: %d output line(s), %d error line(s)", job_id, output.lines, error.lines)
    return out, err


def _encode(
    job_id: str, ids: list[str], by_id: dict[str, RequestResult], code: str, message: str
) -> list[tuple[bool, bytes]]:
    """Each request's line (JSON, UTF-8, newline-ended) in the order of ``ids``, and whether it is completed."""
    out: list[tuple[bool, bytes]] = []
    for rid in ids:
        result = by_id.get(rid)
        line = _stopped_line(job_id, rid, code, message) if result is None else output_line(result)
        text = json.dumps(line.model_dump(mode="json"), ensure_ascii=False) + "\n"
        out.append((result is not None and result.status == "completed", text.encode("utf-8", "backslashreplace")))
    return out


def _stopped_line(job_id: str, rid: str, code: str, message: str) -> BatchOutputLine:
    """The error line of a request that never ran (its id as ``output_line`` makes it)."""
    digest = hashlib.sha256(rid.encode()).hexdigest()[:24]
    custom_id = rid.removeprefix(f"{job_id}/")
    return BatchOutputLine(
        id=f"batch_req_{digest}",
        custom_id=custom_id,
        response=None,
        error=BatchError(code=code, message=message),
        route={},
    )
