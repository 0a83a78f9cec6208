"""Input and output lines of batch files (OpenAI Batch API format, plus a simple prompt form).

The request body and its limits are in ``schemas.chat`` (re-exported here).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue

from schemas.base import CustomId, Strict
from schemas.chat import ChatBody, ChatMessage, Limits

__all__ = [
    "BatchError",
    "BatchOutputLine",
    "BatchRequestLine",
    "BatchResponse",
    "ChatBody",
    "ChatMessage",
    "Limits",
    "SimplePromptLine",
]


class BatchRequestLine(Strict):
    """One line of an OpenAI Batch input file."""

    custom_id: CustomId
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: ChatBody


class SimplePromptLine(Strict):
    """``{"id": ..., "prompt": ...}``: one user prompt, defaults for everything else."""

    id: CustomId
    prompt: str
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)


class BatchResponse(Strict):
    status_code: int
    request_id: str
    body: dict[str, JsonValue] | None


class BatchError(Strict):
    code: str
    message: str


class BatchOutputLine(Strict):
    """One line of the results file: OpenAI Batch output plus the routing decision."""

    id: str
    custom_id: str
    response: BatchResponse | None
    error: BatchError | None
    route: dict[str, Any]
