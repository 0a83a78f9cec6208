"""Failed requests in the results file, through the whole pipeline, in OpenAI's batch output format.

An unknown model gets the backend's 404: ``response: {status_code: 404, request_id, body: <its error
body>}, error: null``. A backend that never answers (connection refused) gets ``response: null`` and
``error: {code: "connection_error", message}``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.integration.helpers import assert_exact_totals, running, sample_requests, submit_requests
from workers.inference.serve import serve_inference
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest
from workers.submit.jobs import wait_for_job
from workers.submit.output import write_results

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there now: connections are refused


def with_model(request: InputRequest, model: str) -> InputRequest:
    return InputRequest(request.line, request.custom_id, request.body.model_copy(update={"model": model}))


async def test_failed_lines_follow_openais_batch_output(
    settings: Settings, artifact: Path, redis: Redis, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"llm_model_urls": {"unreachable-model": f"http://127.0.0.1:{closed_port()}/v1"}})
    good, unknown, unreachable = sample_requests(3)
    requests = [good, with_model(unknown, "no-such-model"), with_model(unreachable, "unreachable-model")]
    store = Store(redis)
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        meta = await submit_requests(s, store, requests, "failed-lines")
        await wait_for_job(store, meta, check=w.check, timeout_s=60)
    results = {r.custom_id: r for r in await assert_exact_totals(store, meta.job_id, 1, 2)}
    assert results[unknown.custom_id].attempts == 1  # a 404 is permanent: no retry
    assert results[unreachable.custom_id].attempts == s.inference.max_attempts
    out = tmp_path / "results.jsonl"
    assert await write_results(store, meta.job_id, out) == 3
    lines = {line["custom_id"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}

    ok = lines[good.custom_id]
    assert ok["response"]["status_code"] == 200 and ok["error"] is None

    not_found = lines[unknown.custom_id]
    assert not_found["error"] is None
    assert not_found["response"] == {
        "status_code": 404,
        "request_id": f"{meta.job_id}/{unknown.custom_id}",
        "body": {
            "error": {
                "message": "The model `no-such-model` does not exist.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        },
    }
    assert not_found["route"]["model"] == "no-such-model"

    refused = lines[unreachable.custom_id]
    assert refused["response"] is None
    assert refused["error"]["code"] == "connection_error"
    attempts = s.inference.max_attempts
    assert refused["error"]["message"].startswith(f"gave up after {attempts} attempts: transport error: ")
