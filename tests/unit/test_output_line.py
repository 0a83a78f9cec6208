"""Results file lines in OpenAI's batch output format, for every way a request can end.

Each case goes through the real LLM client (httpx MockTransport as the backend), the inference worker's
record builders and a store round trip (the record as JSON and back), then `output_line`.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import PromptMessage, RoutedMessage
from schemas.records import RequestResult, Usage
from tests.factories import route_decision
from workers.inference.client import LLMClient, LLMFailed, RetryPolicy
from workers.inference.results import completed, failed
from workers.submit.output import output_line

RID = "job-1/q-7"
LINE_ID = "batch_req_" + hashlib.sha256(RID.encode()).hexdigest()[:24]
NOT_FOUND = {
    "error": {
        "message": "The model `nope` does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
}
COMPLETION = {
    "id": "chatcmpl-1",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "The answer is (B)."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7},
}


def routed() -> RoutedMessage:
    prompt = PromptMessage(
        request_id=RID,
        job_id="job-1",
        custom_id="q-7",
        line=7,
        body=ChatBody(messages=[ChatMessage(role="user", content="q")]),
        submitted_at=time.time(),
    )
    return RoutedMessage(prompt=prompt, route=route_decision("direct"), routed_at=time.time())


async def outcome(responses: list[Any], max_attempts: int = 2) -> RequestResult:
    """What the inference worker stores after calling a backend that answers ``responses`` in turn."""

    def handler(request: httpx.Request) -> httpx.Response:
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def no_sleep(s: float) -> None:
        return None

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    llm = LLMClient(http, RetryPolicy(max_attempts, 0.01, 0.01), sleep=no_sleep)
    try:
        result = completed(routed(), await llm.complete("http://llm/v1", {"model": "m"}))
    except LLMFailed as exc:
        result = failed(routed(), exc)
    finally:
        await http.aclose()
    assert not responses
    return RequestResult.model_validate_json(result.model_dump_json())  # as read back from Redis


def line_of(result: RequestResult) -> dict[str, Any]:
    line: dict[str, Any] = json.loads(output_line(result).model_dump_json())
    assert line.pop("route") == result.route.model_dump(mode="json")
    return line


async def test_a_completion_is_a_200_response() -> None:
    result = await outcome([httpx.Response(200, json=COMPLETION)])
    assert line_of(result) == {
        "id": LINE_ID,
        "custom_id": "q-7",
        "response": {"status_code": 200, "request_id": RID, "body": COMPLETION},
        "error": None,
    }


async def test_an_unknown_model_is_the_backends_404_body() -> None:
    result = await outcome([httpx.Response(404, json=NOT_FOUND)])
    assert (result.status, result.http_status, result.attempts, result.error_code) == ("failed", 404, 1, None)
    assert line_of(result) == {
        "id": LINE_ID,
        "custom_id": "q-7",
        "response": {"status_code": 404, "request_id": RID, "body": NOT_FOUND},
        "error": None,
    }


async def test_5xx_after_the_last_retry_keeps_the_last_status_and_body() -> None:
    busy = {"error": {"message": "busy", "type": "server_error", "param": None, "code": "service_unavailable"}}
    result = await outcome([httpx.Response(500, json={"error": {"message": "first"}}), httpx.Response(503, json=busy)])
    assert result.attempts == 2 and result.error == "gave up after 2 attempts: HTTP 503: busy"
    assert line_of(result)["response"] == {"status_code": 503, "request_id": RID, "body": busy}
    assert line_of(result)["error"] is None


async def test_an_error_body_that_is_not_json_is_wrapped_in_openais_shape() -> None:
    result = await outcome([httpx.Response(400, text="<html>bad request</html>")])
    assert result.response_body is None
    assert line_of(result)["response"] == {
        "status_code": 400,
        "request_id": RID,
        "body": {"error": {"message": "HTTP 400: <html>bad request</html>", "type": None, "param": None, "code": None}},
    }


@pytest.mark.parametrize(
    ("last", "code", "message"),
    [
        (httpx.ReadTimeout("slow"), "timeout", "gave up after 2 attempts: timeout: ReadTimeout"),
        (
            httpx.ConnectError("refused"),
            "connection_error",
            "gave up after 2 attempts: transport error: ConnectError: refused",
        ),
    ],
)
async def test_no_http_answer_is_a_null_response_and_an_error(last: Exception, code: str, message: str) -> None:
    # the first attempt got a 503: what counts is how the last one ended
    result = await outcome([httpx.Response(503, json={"error": {"message": "busy"}}), last])
    assert result.http_status is None and result.response_body is None
    assert line_of(result) == {
        "id": LINE_ID,
        "custom_id": "q-7",
        "response": None,
        "error": {"code": code, "message": message},
    }


async def test_a_200_that_is_not_a_completion_is_an_invalid_response() -> None:
    result = await outcome([httpx.Response(200, json={"id": "x", "choices": []})])
    assert result.http_status == 200
    assert line_of(result)["response"] is None
    assert line_of(result)["error"] == {"code": "invalid_response", "message": "200 without choices"}


def test_records_stored_before_error_code_existed_still_export() -> None:
    base = {
        "request_id": RID,
        "job_id": "job-1",
        "custom_id": "q-7",
        "line": 7,
        "status": "failed",
        "route": route_decision("direct").model_dump(mode="json"),
        "model": "m",
        "usage": Usage().model_dump(),
        "attempts": 4,
        "llm_latency_s": 1.0,
        "latency_s": 2.0,
        "finished_at": 3.0,
    }
    old_timeout = RequestResult.model_validate({**base, "error": "gave up after 4 attempts: timeout: ReadTimeout"})
    assert line_of(old_timeout)["error"] == {
        "code": "llm_error",
        "message": "gave up after 4 attempts: timeout: ReadTimeout",
    }
    old_404 = RequestResult.model_validate({**base, "http_status": 404, "error": "HTTP 404: no such model"})
    assert line_of(old_404)["response"] == {
        "status_code": 404,
        "request_id": RID,
        "body": {"error": {"message": "HTTP 404: no such model", "type": None, "param": None, "code": None}},
    }
