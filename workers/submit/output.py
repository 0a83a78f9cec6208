"""A job's results as OpenAI Batch output lines (``output_line``), and the CLI's export of them (``write_results``);
the API's output and error files are written from the same lines (``workers.submit.finalize``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from schemas.batch import BatchError, BatchOutputLine, BatchResponse
from schemas.records import RequestResult
from workers.store.jobstore import Store

ORDER_CHUNK: Final = 1000  # request ids (and their results) read from Redis per step


def output_line(result: RequestResult) -> BatchOutputLine:
    """The result as a line of OpenAI's batch output. A completion, and an HTTP error answer of the backend
    (4xx, or 429/5xx once retries ran out), is ``response: {status_code, request_id, body}`` (the completion,
    or the backend's error body as sent) with ``error: null``; a request that got no HTTP answer (timeout,
    connection failure, a 200 that is not a completion) is ``response: null`` with ``error: {code, message}``."""
    digest = hashlib.sha256(result.request_id.encode()).hexdigest()[:24]
    route = result.route.model_dump(mode="json")
    if result.answered_by is not None:  # a fallback is configured: which endpoint answered
        route["answered_by"] = result.answered_by.model_dump(mode="json")
    response, error = None, None
    status = result.http_status
    if result.status == "completed":
        response = BatchResponse(status_code=status or 200, request_id=result.request_id, body=result.response_body)
    elif status is not None and status >= 400:
        body = result.response_body
        if body is None:  # the backend's body was not a JSON object (or is not stored): OpenAI's shape around it
            message = result.error or f"HTTP {status}"
            body = {"error": {"message": message, "type": None, "param": None, "code": None}}
        response = BatchResponse(status_code=status, request_id=result.request_id, body=body)
    else:
        error = BatchError(code=result.error_code or "llm_error", message=result.error or "failed")
    return BatchOutputLine(
        id=f"batch_req_{digest}", custom_id=result.custom_id, response=response, error=error, route=route
    )


async def in_order(
    store: Store, job_id: str, chunk: int = ORDER_CHUNK
) -> AsyncIterator[tuple[list[str], dict[str, RequestResult]]]:
    """The job's request ids in input order (its ``order`` list), ``chunk`` at a time, each chunk with the
    results recorded for them (by request id; a request with no result is missing from the dict). Memory holds
    one chunk, whatever the job's size; the walk ``finalize`` and the CLI's exports share."""
    start = 0
    while ids := await store.request_ids_in_order(job_id, start, chunk):
        start += len(ids)
        yield ids, {r.request_id: r for r in await store.results_of(job_id, ids, chunk)}
        if len(ids) < chunk:
            return


def encode_line(result: RequestResult) -> str:
    """The result's output line as JSON text (no line end)."""
    return json.dumps(output_line(result).model_dump(mode="json"), ensure_ascii=False)


async def write_results(store: Store, job_id: str, path: Path) -> int:
    """Write the job's results in input order, one OpenAI Batch output line each, streamed from Redis a chunk
    at a time (``write_lines``); returns the count."""

    async def lines() -> AsyncIterator[list[str]]:
        async for ids, results in in_order(store, job_id):
            yield [encode_line(results[rid]) + "\n" for rid in ids if rid in results]

    return await write_lines(path, lines())


async def write_lines(path: Path, chunks: AsyncIterator[list[str]]) -> int:
    """Write the chunks of lines (newline-ended) to a temporary file beside ``path``, renamed over it once all
    are written (a reader never sees half a file); returns the number of lines."""
    tmp = path.with_name(path.name + ".tmp")
    f = await asyncio.to_thread(open, tmp, "w", encoding="utf-8")
    count = 0
    try:
        async for lines in chunks:
            await asyncio.to_thread(f.writelines, lines)
            count += len(lines)
    finally:
        await asyncio.to_thread(f.close)
    await asyncio.to_thread(tmp.replace, path)
    return count
