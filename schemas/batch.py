"""Input and output lines of batch files (OpenAI Batch API format, plus a simple prompt form)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue

from schemas.base import Strict

Role = Literal["system", "user", "assistant", "developer", "tool"]


class ChatMessage(Strict):
    role: Role
    content: str
    name: str | None = None


class ChatBody(Strict):
    """The body of one ``/v1/chat/completions`` request, as far as ThinkRoute forwards it.

    ``model`` may be omitted: the routing policy's target model is used. Reasoning switches
    (``chat_template_kwargs``, ``reasoning_effort``) are set by the inference worker from the
    routing decision, so they are not accepted here.
    """

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    metadata: dict[str, str] | None = None


class BatchRequestLine(Strict):
    """One line of an OpenAI Batch input file."""

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: ChatBody


class SimplePromptLine(Strict):
    """``{"id": ..., "prompt": ...}``: one user prompt, defaults for everything else."""

    id: str = Field(min_length=1, max_length=512)
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
