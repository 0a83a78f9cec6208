"""How far to trust a direct answer, and the escalated routing decision when it is not trusted.

``answer_confidence`` reads only what the backend returned:

* answer-format check: no extractable ``The answer is (X)`` (or ``Answer: X``) in the content, or a reply
  cut at ``max_tokens`` (finish reason ``length``) -> 0.0;
* with token log-probabilities (``choices[0].logprobs.content``): the probability of the answer-letter
  token (the last token equal to the extracted letter), else exp(mean token logprob);
* without log-probabilities a well-formed answer -> 1.0 (only the format check applies).

Pure functions; the worker decides with ``confidence < threshold``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from schemas.messages import AttemptSummary, RouteDecision
from schemas.records import RequestResult

_ANSWER = re.compile(r"answer is \(?([A-J])\)?|Answer:\s*\(?([A-J])\b", re.IGNORECASE)


def extract_letter(content: str | None) -> str | None:
    """The last multiple-choice letter the content states as its answer, or None."""
    if not content:
        return None
    found: list[tuple[str, str]] = _ANSWER.findall(content)
    if not found:
        return None
    a, b = found[-1]
    return str(a or b).upper()


def _token_logprobs(choice: Mapping[str, Any]) -> list[tuple[str, float]]:
    lp = choice.get("logprobs")
    if not isinstance(lp, Mapping):
        return []
    content = lp.get("content")
    if not isinstance(content, list):
        return []
    out = []
    for tok in content:
        if isinstance(tok, Mapping) and isinstance(tok.get("logprob"), int | float):
            out.append((str(tok.get("token", "")), float(tok["logprob"])))
    return out


def answer_confidence(body: Mapping[str, Any]) -> float:
    """Confidence in [0, 1] of a chat completion's answer (see the module doc)."""
    choices = body.get("choices") or []
    if not choices or not isinstance(choices[0], Mapping):
        return 0.0
    choice = choices[0]
    message = choice.get("message") or {}
    letter = extract_letter(message.get("content"))
    if letter is None or choice.get("finish_reason") == "length":
        return 0.0
    tokens = _token_logprobs(choice)
    if not tokens:
        return 1.0
    for text, logprob in reversed(tokens):
        if text.strip().upper() == letter:
            return min(1.0, math.exp(logprob))
    return min(1.0, math.exp(sum(lp for _, lp in tokens) / len(tokens)))


def escalated_decision(route: RouteDecision, model: str | None) -> RouteDecision:
    """The decision for the second attempt: reasoning on (effort kept), optionally a stronger model."""
    return route.model_copy(
        update={
            "route": "reasoning",
            "use_reasoning": True,
            "model": model or route.model,
            "reason": f"{route.reason}+escalated",
        }
    )


def attempt_summary(result: RequestResult, confidence: float, threshold: float) -> AttemptSummary:
    """What the first attempt answered and cost, to travel with the escalated message and be counted."""
    return AttemptSummary(
        route=result.route,
        model=result.model,
        answer=result.answer,
        finish_reason=result.finish_reason,
        confidence=round(min(max(confidence, 0.0), 1.0), 6),
        threshold=threshold,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        reasoning_tokens=result.usage.reasoning_tokens,
        llm_latency_s=result.llm_latency_s,
    )
