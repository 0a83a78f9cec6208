"""The request and response shapes of OpenAI's chat completions API, as the replay server speaks it.

Errors have OpenAI's shape on every path: ``{"error": {"message", "type", "param", "code"}}`` (what the
official SDK parses into ``openai.BadRequestError`` etc., with ``.param`` naming the bad parameter).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from workers.replay.answer import Mode, ReplayAnswer

logger = logging.getLogger(__name__)

EFFORTS = ("low", "medium", "high")

# OpenAI's error type by HTTP status, where not invalid_request_error (4xx) or server_error (5xx): a 429 is
# type "requests", code "rate_limit_exceeded".
ERROR_TYPES = {429: "requests"}


class RequestError(Exception):
    """A request the server refuses: HTTP status, message, the parameter at fault, OpenAI's error code."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object; 5xx are ``server_error``."""
    err_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


def request_error_response(exc: RequestError) -> JSONResponse:
    return error_response(exc.status, exc.message, param=exc.param, code=exc.code)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (unknown route 404, wrong method 405) as OpenAI error bodies."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    where = f"{request.method} {request.url.path}"
    message = f"Invalid URL ({where})" if status == 404 else f"{where}: {getattr(exc, 'detail', exc)}"
    response = error_response(status, message)
    if isinstance(exc, HTTPException) and exc.headers:  # a 405's Allow
        response.headers.update(exc.headers)
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}")


def request_mode(body: Mapping[str, Any], is_qwen3: bool) -> Mode:
    """Thinking on/off and effort from ``chat_template_kwargs`` and ``reasoning_effort``."""
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RequestError(400, "chat_template_kwargs must be an object", param="chat_template_kwargs")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise RequestError(400, f"reasoning_effort must be one of {', '.join(EFFORTS)}", param="reasoning_effort")
    explicit: bool | None = None
    for key in ("enable_thinking", "thinking"):
        if key in kwargs:
            if not isinstance(kwargs[key], bool):
                param = f"chat_template_kwargs.{key}"
                raise RequestError(400, f"{param} must be a boolean", param=param)
            explicit = kwargs[key]
            break
    thinking = (effort is not None or is_qwen3) if explicit is None else explicit
    return Mode(thinking, effort if thinking else None)


def request_max_tokens(body: Mapping[str, Any]) -> int | None:
    param = "max_completion_tokens"
    value = body.get(param)
    if value is None:
        param, value = "max_tokens", body.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(400, "max_tokens / max_completion_tokens must be a positive integer", param=param)
    return value


def request_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise RequestError(400, "each message must be an object with a string role", param=f"messages[{i}]")
        if not isinstance(msg.get("content"), str | list | None):
            param = f"messages[{i}].content"
            raise RequestError(400, "message content must be a string, a list of parts or null", param=param)
    return messages


def usage_body(answer: ReplayAnswer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
    }


def completion_body(
    request_id: str, created: int, model: str, answer: ReplayAnswer, finish_reason: str
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content,
        "reasoning_content": answer.reasoning_content,
        "tool_calls": [],
    }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage_body(answer),
        "system_fingerprint": f"replay:{answer.source}",
    }
