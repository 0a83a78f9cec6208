"""Outcome records: the one format everything that learns or evaluates routing reads (JSONL, a record a line).

A record is a prompt and what each arm made of it. The prompt is ``prompt`` (text), or ``question`` with
``options`` (or ``choices``), or an OpenAI Batch request line's ``custom_id``/``body`` (``method`` and ``url``
may come along). An arm is a route and effort (``direct``, ``reasoning``, ``reasoning:low|medium|high``) or a
model name. ``thinkroute records convert`` writes them from other formats (``workers.evaluation.convert``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue, model_validator

from schemas.base import Strict
from schemas.chat import ChatBody


class ArmOutcome(Strict):
    correct: float = Field(ge=0, le=1, description="1 right, 0 wrong (or a mean over samples)")
    tokens: int | None = Field(default=None, ge=0, description="completion tokens (reasoning included)")
    latency_s: float | None = Field(default=None, ge=0)


class OutcomeRecord(Strict):
    v: Literal[1] = Field(default=1, description="schema version")
    id: str | None = Field(default=None, description="a stable id (question id, custom_id)")
    prompt: str | None = None
    question: str | None = None
    options: list[str] | None = None
    choices: list[str] | None = Field(default=None, description="another name for options")
    custom_id: str | None = None
    method: str | None = None
    url: str | None = None
    body: ChatBody | None = None
    category: str | None = None
    answer: str | None = Field(default=None, description="the reference answer, when known")
    source: str | None = Field(default=None, description="where the outcomes come from")
    outcomes: dict[str, ArmOutcome] = Field(min_length=1)
    meta: dict[str, JsonValue] | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> OutcomeRecord:
        given = [self.prompt is not None, self.question is not None, self.body is not None]
        if sum(given) != 1:
            raise ValueError("a record needs exactly one of prompt, question (with options) or body")
        if self.options is not None and self.choices is not None:
            raise ValueError("give options or choices, not both")
        return self
