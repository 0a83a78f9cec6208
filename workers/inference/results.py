"""The record of one request's outcome, built from the routed message and the LLM's reply (or failure)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from schemas.chat import ChatBody
from schemas.messages import RoutedMessage
from schemas.records import AnsweredBy, ExplorationRecord, Grade, RequestResult, Usage
from workers.grading import final_answer, grade, reference_of
from workers.inference.client import Completion, LLMFailed


def usage_of(body: Mapping[str, Any]) -> Usage:
    u = body.get("usage") or {}
    details = u.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(u.get("prompt_tokens") or 0),
        completion_tokens=int(u.get("completion_tokens") or 0),
        reasoning_tokens=int(details.get("reasoning_tokens") or 0),
    )


def result_of(msg: RoutedMessage, **outcome: Any) -> RequestResult:
    """A request's record: what the prompt and route say, plus the outcome's fields."""
    p, now = msg.prompt, time.time()
    return RequestResult(
        request_id=p.request_id,
        job_id=p.job_id,
        custom_id=p.custom_id,
        line=p.line,
        route=msg.route,
        latency_s=max(now - p.submitted_at, 0.0),
        finished_at=now,
        escalated_from=msg.previous_attempt,
        **outcome,
    )


def graded(body: ChatBody, answer: str | None) -> tuple[Grade | None, str | None]:
    """The answer's grade (when the prompt carries a reference) and its final answer, normalised: by the
    reference's method when graded, else the automatic extractor (``workers.grading``). ``answer`` is the
    content only, never the thinking. For routed results and exploration records alike."""
    ref = reference_of(body)
    if ref is None:
        return None, final_answer(answer)
    g = grade(answer, *ref)
    return g, g.extracted


def _answered(msg: RoutedMessage, c: Completion) -> dict[str, Any]:
    """What a routed result and an exploration record both keep of a completion: the answer graded as in
    ``graded``, the model, usage, finish reason, attempts and LLM time."""
    choice = c.body["choices"][0]
    answer = (choice.get("message") or {}).get("content")
    verdict, final = graded(msg.prompt.body, answer if isinstance(answer, str) else None)
    return {
        "status": "completed",
        "model": str(c.body.get("model") or msg.route.model),
        "usage": usage_of(c.body),
        "answer": answer,
        "finish_reason": choice.get("finish_reason"),
        "attempts": c.attempts,
        "llm_latency_s": c.latency_s,
        "grade": verdict,
        "final_answer": final,
    }


def completed(msg: RoutedMessage, c: Completion, by: AnsweredBy | None = None) -> RequestResult:
    message = c.body["choices"][0].get("message") or {}
    return result_of(
        msg,
        **_answered(msg, c),
        reasoning=message.get("reasoning_content") or message.get("reasoning"),
        http_status=c.status_code,
        response_body=c.body,
        answered_by=by,
    )


def failed(msg: RoutedMessage, exc: LLMFailed) -> RequestResult:
    return result_of(
        msg,
        status="failed",
        model=msg.route.model,
        usage=Usage(),
        http_status=exc.status_code,
        response_body=exc.body,
        error=str(exc),
        error_code=exc.code,
        attempts=exc.attempts,
        llm_latency_s=exc.latency_s,
        answered_by=exc.answered_by,
    )


def exploration_of(msg: RoutedMessage, **outcome: Any) -> ExplorationRecord:
    """An exploration (shadow) answer's record: the prompt (its body too), the shadow's route, the outcome."""
    p = msg.prompt
    return ExplorationRecord(
        request_id=p.request_id,
        job_id=p.job_id,
        custom_id=p.custom_id,
        line=p.line,
        route=msg.route,
        body=p.body,
        finished_at=time.time(),
        **outcome,
    )


def explored(msg: RoutedMessage, c: Completion, by: AnsweredBy | None = None) -> ExplorationRecord:
    """The shadow's completed answer, graded as a routed result is."""
    return exploration_of(msg, **_answered(msg, c), answered_by=by)


def explore_failed(msg: RoutedMessage, exc: LLMFailed) -> ExplorationRecord:
    return exploration_of(
        msg,
        status="failed",
        model=msg.route.model,
        usage=Usage(),
        error=str(exc),
        attempts=exc.attempts,
        llm_latency_s=exc.latency_s,
        answered_by=exc.answered_by,
    )
