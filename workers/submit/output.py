"""A job's results as OpenAI Batch output lines (``output_line``), and the CLI's export of them (``write_results``);
the API's output and error files are written from the same lines (``workers.submit.finalize``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from schemas.batch import BatchError, BatchOutputLine, BatchResponse
from schemas.records import RequestResult
from workers.store.jobstore import Store


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


async def write_results(store: Store, job_id: str, path: Path) -> int:
    """Write the job's results in input order, one OpenAI Batch output line each; returns the count."""
    results = [r async for r in store.results(job_id)]
    results.sort(key=lambda r: r.line)
    lines = [json.dumps(output_line(r).model_dump(mode="json"), ensure_ascii=False) + "\n" for r in results]
    await asyncio.to_thread(_write_atomically, path, lines)
    return len(results)


def _write_atomically(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    tmp.replace(path)
