"""``/v1/files``: upload (multipart, purpose ``batch``), list, retrieve, download (streamed), delete.

An upload is parsed by Starlette into a spooled temporary file (memory up to 1 MB, then disk) and streamed
from there into the file storage, its bytes and lines counted on the way: past ``max_file_bytes`` it is 413,
past ``max_file_lines`` 400, and nothing is stored. Another owner's file is answered exactly as a missing one
(404)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from schemas.api import FileDeleted, FileList, FileObject
from schemas.records import FileRecord
from workers.api.context import ApiContext, context, owner
from workers.api.problems import ApiError, int_param, json_response, no_such_file, str_param, too_large
from workers.files.ids import new_file_id

log = logging.getLogger(__name__)

CHUNK = 1 << 20
FILENAME_MAX = 255
FORM_FIELD_MAX = 4096  # the purpose field (and any other small field) of an upload


def file_object(record: FileRecord) -> FileObject:
    return FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=int(record.created_at),
        filename=record.filename,
        purpose=record.purpose,
        status="processed",
    )


def clean_filename(name: str | None) -> str:
    base = re.split(r"[/\\]", name or "")[-1].strip().replace("\x00", "")
    return base[:FILENAME_MAX] or "file.jsonl"


class Counted:
    """An upload's bytes and lines as they stream by; raises past the limits."""

    def __init__(self, max_bytes: int, max_lines: int) -> None:
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.bytes = 0
        self.newlines = 0
        self.last = b"\n"

    @property
    def lines(self) -> int:
        """Lines, a last one without its newline included."""
        return self.newlines + (0 if self.last == b"\n" else 1)

    def add(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self.bytes > self.max_bytes:
            raise too_large("The file", self.max_bytes)
        self.newlines += chunk.count(b"\n")
        self.last = chunk[-1:] or self.last
        if self.lines > self.max_lines:
            raise ApiError(
                400, f"The file has more than {self.max_lines} lines, the most a batch file may hold.", param="file"
            )

    async def stream(self, upload: UploadFile) -> AsyncIterator[bytes]:
        while chunk := await upload.read(CHUNK):
            self.add(chunk)
            yield chunk


async def _record(ctx: ApiContext, request: Request, file_id: str) -> FileRecord:
    record = await ctx.index.get(file_id)
    if record is None or record.owner != owner(request):
        raise no_such_file(file_id)
    return record


async def upload(request: Request) -> Response:
    ctx = context(request)
    api = ctx.settings.api
    async with request.form(max_files=1, max_fields=8, max_part_size=FORM_FIELD_MAX) as form:
        purpose, part = form.get("purpose"), form.get("file")
        if not isinstance(purpose, str):
            raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
        if purpose != "batch":
            raise ApiError(
                400, f"Invalid value for 'purpose': {purpose[:64]!r}; only 'batch' is served here.", param="purpose"
            )
        if not isinstance(part, UploadFile):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        file_id = new_file_id()
        counted = Counted(api.max_file_bytes, api.max_file_lines)
        size = await ctx.storage.put(file_id, counted.stream(part))
    if size == 0:
        await ctx.storage.delete(file_id)
        raise ApiError(400, "The file is empty.", param="file")
    record = FileRecord(
        id=file_id,
        owner=owner(request),
        filename=clean_filename(part.filename),
        purpose="batch",
        kind="input",
        bytes=size,
        lines=counted.lines,
        created_at=ctx.clock(),
        storage_key=file_id,
    )
    try:
        await ctx.index.add(record)
    except BaseException:
        await ctx.storage.delete(file_id)
        raise
    log.info("file %s uploaded by %s: %d bytes, %d lines", file_id, record.owner, size, record.lines)
    return json_response(file_object(record))


async def list_files(request: Request) -> Response:
    ctx = context(request)
    limit = int_param(request, "limit", 10_000, 1, 10_000)
    order = str_param(request, "order", ("asc", "desc")) or "desc"
    records, more = await ctx.index.list(
        owner(request),
        purpose=str_param(request, "purpose"),
        after=str_param(request, "after"),
        limit=limit,
        order="asc" if order == "asc" else "desc",
    )
    data = [file_object(r) for r in records]
    return json_response(
        FileList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=more)
    )


async def retrieve(request: Request) -> Response:
    record = await _record(context(request), request, request.path_params["file_id"])
    return json_response(file_object(record))


async def content(request: Request) -> Response:
    ctx = context(request)
    record = await _record(ctx, request, request.path_params["file_id"])
    chunks = ctx.storage.get(record.storage_key)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except FileNotFoundError:
        log.error("file %s: its bytes are missing from the storage (key %s)", record.id, record.storage_key)
        raise no_such_file(record.id) from None

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    headers = {"content-length": str(record.bytes)}
    return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)


async def delete(request: Request) -> Response:
    ctx = context(request)
    record = await _record(ctx, request, request.path_params["file_id"])
    await ctx.index.delete(record.id)
    await ctx.storage.delete(record.storage_key)
    log.info("file %s deleted by %s", record.id, record.owner)
    return json_response(FileDeleted(id=record.id, deleted=True))


ROUTES = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
    Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", content, methods=["GET"]),
]
