"""Redis records: one per request, one meta record per job, and the job's counters as read back."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from schemas.base import Strict
from schemas.chat import ChatBody
from schemas.messages import AttemptSummary, RouteDecision


class Usage(Strict):
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0, description="includes reasoning tokens")
    reasoning_tokens: int = Field(default=0, ge=0)


GradeMethod = Literal["exact", "choice", "numeric"]


class Grade(Strict):
    """An answer graded against the request's reference (``metadata.reference``), ``workers.grading``."""

    method: GradeMethod
    correct: bool
    extracted: str | None = Field(default=None, description="the final answer the extractor found, normalised")
    reference: str = Field(description="the reference, normalised the same way")


class AnsweredBy(Strict):
    """The endpoint a request's answer (or its last failure) came from, when a fallback is configured."""

    base_url: str = Field(description="the endpoint's base URL, without credentials")
    model: str = Field(description="the model asked of it")
    fallback: bool = Field(description="true: the fallback (the primary's retries ran out or its breaker is open)")


class RequestResult(Strict):
    """Key ``tr:{job}:req:<request_id>``: the outcome of one request, written once."""

    v: Literal[1] = Field(default=1, description="schema version")
    request_id: str
    job_id: str
    custom_id: str
    line: int
    status: Literal["completed", "failed"]
    route: RouteDecision
    model: str
    usage: Usage
    answer: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    http_status: int | None = Field(default=None, description="the status of the backend's last HTTP answer")
    response_body: dict[str, JsonValue] | None = Field(
        default=None, description="the chat completion; when failed with an HTTP error, the backend's error body"
    )
    error: str | None = None
    error_code: str | None = Field(
        default=None,
        description="failed without an HTTP error answer: timeout | connection_error | invalid_response",
    )
    attempts: int = Field(ge=0)
    llm_latency_s: float = Field(ge=0, description="time spent in LLM calls, retries included")
    latency_s: float = Field(ge=0, description="submitted -> result stored")
    finished_at: float
    escalated_from: AttemptSummary | None = Field(
        default=None, description="the first attempt when this result is an escalation (its tokens are counted too)"
    )
    grade: Grade | None = Field(default=None, description="graded when the request carries a reference")
    final_answer: str | None = Field(
        default=None, description="the answer's final answer, normalised (what agreement between arms compares)"
    )
    answered_by: AnsweredBy | None = Field(
        default=None, description="which endpoint answered; None: no fallback configured (the route's endpoint)"
    )


class ExplorationRecord(Strict):
    """Key ``tr:{job}:explore:<request_id>``: the answer of the arm the router did not choose, for a prompt of
    the job's exploration sample; written once, its tokens counted in the job's ``exploration`` bucket only."""

    v: Literal[1] = Field(default=1, description="schema version")
    request_id: str
    job_id: str
    custom_id: str
    line: int
    status: Literal["completed", "failed"]
    route: RouteDecision = Field(description="the shadow decision: the other arm than the routed result's")
    body: ChatBody = Field(description="the prompt (what `thinkroute fit --from-job` learns from)")
    model: str
    usage: Usage
    answer: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    grade: Grade | None = None
    final_answer: str | None = None
    attempts: int = Field(ge=0)
    llm_latency_s: float = Field(ge=0)
    finished_at: float
    answered_by: AnsweredBy | None = None


class JobPlan(Strict):
    """What the planning pass fixed for a whole job (in ``JobMeta``): its budget, threshold and exploration."""

    budget: str | None = Field(default=None, description="share=S, tokens=N, always or never; None: the policy")
    policy_version: str | None = None
    threshold: float | None = Field(default=None, description="reasoning when priority >= threshold")
    planned_reasoning: int = Field(default=0, ge=0, description="prompts planned to reasoning")
    expected_reasoning_tokens: float | None = Field(
        default=None, description="the token model's expected reasoning tokens of the planned prompts"
    )
    explore: float = Field(default=0.0, ge=0, le=1, description="the share of the job asked to be explored")
    explore_seed: int = 0
    explore_total: int = Field(default=0, ge=0, description="prompts in the exploration sample")


JobState = Literal["validating", "submitting", "running", "stopping", "failed", "done", "cancelled", "expired"]
StopReason = Literal["cancelled", "expired"]
TERMINAL_STATES: tuple[JobState, ...] = ("failed", "done", "cancelled", "expired")


class LineError(Strict):
    """One validation error of a batch's input file (OpenAI's ``Batch.errors.data`` item)."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


class BatchInfo(Strict):
    """What ``POST /v1/batches`` asked for (in the job's record): its input file, endpoint, window, metadata."""

    input_file_id: str
    endpoint: str = "/v1/chat/completions"
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None


class JobMeta(Strict):
    """Key ``tr:{job}:meta`` (a hash, ``workers.store.jobstore``): written by submit, its state kept current.

    ``validating`` (API batches only) while the input file is checked; ``submitting`` while the prompts are
    published (results already count), ``running`` once every one was acknowledged, ``done`` when the last
    result is stored; ``failed`` (terminal) when validation or publishing failed or the submitter vanished:
    nothing of the job counts, its results are discarded, ``failed_reason`` says why. A cancel or the end of
    the completion window (``stop``) makes a submitting or running job ``stopping``: no request of it starts
    any more, those not started are counted as stopped (``JobTotals.stopped``), the answers in flight are
    kept; when the last of those is in, the job is ``cancelled`` or ``expired`` (terminal).
    """

    v: Literal[1] = Field(default=1, description="schema version")
    job_id: str
    total: int = Field(ge=0)
    source: str
    submitted_at: float
    state: JobState = "submitting"
    failed_reason: str | None = None
    plan: JobPlan | None = Field(default=None, description="the planning pass's budget and exploration, if any")
    owner: str | None = Field(default=None, description="the API key owner that created it; None: the CLI")
    batch: BatchInfo | None = Field(default=None, description="set when created through the HTTP API")
    expires_at: float | None = Field(default=None, description="end of the completion window; None: never")
    # the fields below live in the meta hash beside the record, written by the lifecycle scripts
    # (``workers.store.lua``), and are overlaid on the record by ``Store.job_meta``
    stop: StopReason | None = Field(default=None, description="cancel or expiry asked: no request starts after")
    started_at: float | None = Field(default=None, description="validating -> submitting (OpenAI in_progress_at)")
    stop_at: float | None = Field(default=None, description="when the cancel or the expiry happened")
    settled_at: float | None = Field(default=None, description="every request answered or stopped")
    failed_at: float | None = None
    finalized_at: float | None = Field(default=None, description="the output and error files were written")
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[LineError] | None = Field(default=None, description="validation errors (state failed)")


class RouteTotals(Strict):
    requests: int = 0
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0


class JobTotals(Strict):
    """Key ``tr:{job}:totals`` (a hash of counters) read back as one record, with the sizes of the job's
    in-flight and stopped sets."""

    completed: int = 0
    failed: int = 0
    stopped: int = Field(default=0, description="requests never started: the job was cancelled or expired")
    fallback: int = Field(default=0, description="results (completed or failed) that came from the fallback endpoint")
    in_flight: int = Field(default=0, description="requests admitted by a worker and not yet recorded")
    routes: dict[str, RouteTotals] = Field(default_factory=dict)
    escalations: RouteTotals = Field(
        default_factory=RouteTotals, description="first attempts escalated (requests) and their tokens"
    )
    exploration: dict[str, RouteTotals] = Field(
        default_factory=dict,
        description="per route: the exploration sample's shadow answers and their tokens, never in ``routes``",
    )


FileKind = Literal["input", "output", "error"]


class FileRecord(Strict):
    """Key ``tr:file:{<file_id>}`` (``workers.store.files``): one stored file's metadata; its bytes are in the
    file storage (``workers.files``) under ``storage_key``."""

    v: Literal[1] = Field(default=1, description="schema version")
    id: str = Field(description="file-<24 hex>")
    owner: str
    filename: str
    purpose: Literal["batch", "batch_output"]
    kind: FileKind = "input"
    bytes: int = Field(ge=0)
    lines: int = Field(ge=0)
    created_at: float
    storage_key: str
    job_id: str | None = Field(default=None, description="output and error files: the batch they belong to")
