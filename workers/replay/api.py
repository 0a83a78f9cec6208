"""The request and response shapes of vLLM's OpenAI-compatible chat completions API (as replayed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from workers.replay.answer import Mode, ReplayAnswer

EFFORTS = ("low", "medium", "high")


class RequestError(Exception):
    def __init__(self, status: int, message: str, err_type: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type


def error_response(status: int, message: str, err_type: str) -> JSONResponse:
    """vLLM's error object."""
    body = {"object": "error", "message": message, "type": err_type, "param": None, "code": status}
    return JSONResponse(body, status_code=status)


def request_mode(body: Mapping[str, Any], is_qwen3: bool) -> Mode:
    """Thinking on/off and effort from ``chat_template_kwargs`` and ``reasoning_effort``."""
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise RequestError(400, "chat_template_kwargs must be an object")
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise RequestError(400, f"reasoning_effort must be one of {', '.join(EFFORTS)}")
    explicit: bool | None = None
    for key in ("enable_thinking", "thinking"):
        if key in kwargs:
            if not isinstance(kwargs[key], bool):
                raise RequestError(400, f"chat_template_kwargs.{key} must be a boolean")
            explicit = kwargs[key]
            break
    thinking = (effort is not None or is_qwen3) if explicit is None else explicit
    return Mode(thinking, effort if thinking else None)


def request_max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(400, "max_tokens / max_completion_tokens must be a positive integer")
    return value


def request_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    for msg in messages:
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise RequestError(400, "each message must be an object with a string role")
        if not isinstance(msg.get("content"), str | list | None):
            raise RequestError(400, "message content must be a string, a list of parts or null")
    return messages


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
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
        },
        "system_fingerprint": f"replay:{answer.source}",
    }
