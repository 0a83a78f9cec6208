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


JobState = Literal["submitting", "running", "failed", "done"]


class JobMeta(Strict):
    """Key ``tr:{job}:meta`` (a hash, ``workers.store.jobstore``): written by submit, its state kept current.

    ``submitting`` while the prompts are published (results already count), ``running`` once every one was
    acknowledged, ``done`` when the last result is stored; ``failed`` (terminal) when publishing failed or
    the submitter vanished: nothing of the job counts, its results are discarded, ``failed_reason`` says why.
    """

    v: Literal[1] = Field(default=1, description="schema version")
    job_id: str
    total: int = Field(ge=0)
    source: str
    submitted_at: float
    state: JobState = "submitting"
    failed_reason: str | None = None
    plan: JobPlan | None = Field(default=None, description="the planning pass's budget and exploration, if any")


class RouteTotals(Strict):
    requests: int = 0
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0


class JobTotals(Strict):
    """Key ``tr:{job}:totals`` (a hash of counters) read back as one record."""

    completed: int = 0
    failed: int = 0
    routes: dict[str, RouteTotals] = Field(default_factory=dict)
    escalations: RouteTotals = Field(
        default_factory=RouteTotals, description="first attempts escalated (requests) and their tokens"
    )
    exploration: dict[str, RouteTotals] = Field(
        default_factory=dict,
        description="per route: the exploration sample's shadow answers and their tokens, never in ``routes``",
    )
