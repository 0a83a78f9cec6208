"""Kafka messages: prompts in, routed prompts out, dead letters."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import JOB_ID_MAX_CHARS, REQUEST_ID_MAX_CHARS, CustomId, Strict
from schemas.chat import ChatBody

Route = Literal["reasoning", "direct"]
Effort = Literal["low", "medium", "high"]


class PromptPlan(Strict):
    """What the job's planning pass (``workers.router.plan``, at submit) fixed for one prompt; covered by the MAC.

    With a budget (or a forced arm) the plan decides the route and the router follows it; without one only
    ``explore`` may be set and the router's policy decides.
    """

    route: Route | None = Field(default=None, description="the planned route; None: the router's policy decides")
    priority: float | None = Field(
        default=None, description="the prompt's predicted gain (per expected token, for a token budget)"
    )
    threshold: float | None = Field(
        default=None, description="the job's threshold: planned to reasoning when priority >= threshold"
    )
    budget: str | None = Field(
        default=None, description="what the job asked: share=S, tokens=N, always or never", max_length=64
    )
    explore: bool = Field(default=False, description="answered by both arms (the other one stored beside it)")
    policy_version: str | None = Field(default=None, description="the policy version the plan was made with")


class PromptMessage(Strict):
    """Topic ``thinkroute.prompts``; key = request_id.

    Held to the batch-file reader's limits: ``custom_id`` here, the body's through ``Limits`` in the router's
    validation context (``workers.router.intake``).
    """

    v: Literal[1] = Field(default=1, description="schema version")
    request_id: str = Field(min_length=1, max_length=REQUEST_ID_MAX_CHARS, description="`{job_id}/{custom_id}`")
    job_id: str = Field(min_length=1, max_length=JOB_ID_MAX_CHARS)
    custom_id: CustomId
    line: int = Field(ge=1, description="line number in the submitted file")
    body: ChatBody
    submitted_at: float = Field(description="unix time the job was submitted")
    plan: PromptPlan | None = Field(default=None, description="set by the job's planning pass (budget, exploration)")
    mac: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{64}$",
        description="HMAC-SHA256 (hex) over job_id, custom_id, line, submitted_at and the body, with the job's "
        "secret (kept in Redis, never on Kafka); the inference worker rejects a prompt without a matching one",
    )


class RouteDecision(Strict):
    """What the router decided for one prompt, and why."""

    route: Route
    category: str
    confidence: float = Field(ge=0, le=1)
    use_reasoning: bool
    reasoning_effort: Effort | None = None
    model: str
    policy_version: str
    classifier_version: str
    reason: str = Field(description="which rule decided: category, default, confidence_floor, ...")
    truncated: bool = Field(description="the prompt was longer than the encoder window (head+tail kept)")
    reasoning_score: float | None = Field(
        default=None, description="per-prompt reasoning score (predicted difficulty) when the classifier gives one"
    )
    priority: float | None = Field(
        default=None, description="the predicted gain the decision ranked by (the policy's gain model, else the score)"
    )
    job_threshold: float | None = Field(default=None, description="the job's planned threshold (a budgeted job)")
    budget: str | None = Field(default=None, description="the job's budget when the plan decided", max_length=64)
    explore: bool = Field(default=False, description="this prompt is in the job's exploration sample")


class AttemptSummary(Strict):
    """A first (cheap) attempt that was not trusted and was escalated: what it answered and what it cost."""

    route: RouteDecision
    model: str
    answer: str | None = None
    finish_reason: str | None = None
    confidence: float = Field(ge=0, le=1, description="answer confidence that fell below the threshold")
    threshold: float
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    llm_latency_s: float = Field(default=0.0, ge=0)


class RoutedMessage(Strict):
    """Topics ``thinkroute.reasoning`` and ``thinkroute.direct``; key = request_id."""

    v: Literal[1] = Field(default=1, description="schema version")
    prompt: PromptMessage
    route: RouteDecision
    routed_at: float
    previous_attempt: AttemptSummary | None = Field(
        default=None, description="set on an escalated message: the first attempt it replaces"
    )
    shadow: bool = Field(
        default=False,
        description="an exploration copy: answered by the arm the router did not choose, stored as the request's "
        "exploration record, never counted in the job's results or routed totals",
    )


class DeadLetter(Strict):
    """Topic ``thinkroute.dead``: what could not be processed, with the reason and the original bytes."""

    v: Literal[1] = Field(default=1, description="schema version")
    stage: Literal["router", "inference"]
    reason: str
    error: str = Field(description="error class name")
    topic: str
    partition: int
    offset: int
    key: str | None
    value_b64: str = Field(description="the original message value, base64")
    request_id: str | None = None
    job_id: str | None = None
    at: float
