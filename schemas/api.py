"""The HTTP API's wire formats (``thinkroute serve``): the subset of OpenAI's Files and Batches API that batch
work uses, field for field as the official ``openai`` SDK reads them (``openai.types.Batch``, ``FileObject``),
plus ThinkRoute's own figures in the batch's ``thinkroute`` field (the SDK keeps unknown fields).

Requests we accept (``BatchCreate``) forbid unknown fields, as OpenAI does; the objects we answer with are ours
too (``Strict``). ``schemas/openapi.json`` is generated from these models (``python -m schemas``) and drift-tested;
schemathesis fuzzes ``serve`` from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.base import Strict

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
FilePurpose = Literal["batch", "batch_output"]
Endpoint = Literal["/v1/chat/completions"]
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512


class ErrorDetail(Strict):
    message: str
    type: str = Field(description="invalid_request_error | authentication_error | not_found_error | server_error")
    param: str | None = None
    code: str | None = None


class ErrorResponse(Strict):
    """Every 4xx/5xx answer: ``{"error": {"message", "type", "param", "code"}}``, as OpenAI's."""

    error: ErrorDetail


class FileObject(Strict):
    id: str = Field(description="file-<24 hex>")
    object: Literal["file"] = "file"
    bytes: int = Field(ge=0)
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(Strict):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(Strict):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class BatchLineError(Strict):
    """One validation error of the input file (``Batch.errors.data``): the line it is on, why."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(Strict):
    object: Literal["list"] = "list"
    data: list[BatchLineError] = Field(default_factory=list)


class RequestCounts(Strict):
    total: int = Field(ge=0)
    completed: int = Field(ge=0)
    failed: int = Field(ge=0)


class InputTokensDetails(Strict):
    cached_tokens: int = 0


class OutputTokensDetails(Strict):
    reasoning_tokens: int = 0


class BatchUsage(Strict):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class BatchCreate(Strict):
    """``POST /v1/batches``."""

    input_file_id: str = Field(min_length=1, max_length=128)
    endpoint: Endpoint
    completion_window: str = Field(min_length=1, max_length=16, description="24h; shorter ones if configured")
    metadata: dict[str, str] | None = Field(
        default=None,
        description="up to 16 pairs (keys <= 64, values <= 512 chars); thinkroute_reasoning_share, "
        "thinkroute_reasoning_tokens: the job's budget; thinkroute_explore, thinkroute_explore_seed",
    )
    output_expires_after: dict[str, Any] | None = Field(default=None, description="accepted, not applied")


class Batch(Strict):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    usage: BatchUsage | None = None
    model: str | None = None
    metadata: dict[str, str] | None = None
    thinkroute: dict[str, Any] | None = Field(
        default=None,
        description="ThinkRoute's figures (not OpenAI's): routes, tokens by route, exploration and savings, "
        "cancelled/expired request counts; the SDK keeps it as an extra field",
    )


class BatchList(Strict):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
