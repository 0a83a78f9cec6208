"""Test data shared by several test modules."""

from __future__ import annotations

import json
from typing import Any

from schemas.chat import ChatBody
from schemas.messages import RouteDecision
from schemas.records import BatchInfo, ExplorationRecord, FileRecord, Grade, JobMeta, RequestResult, Usage


def route_decision(route: str = "direct", **overrides: Any) -> RouteDecision:
    """A routing decision with plausible defaults: reasoning routes look like math, direct ones like law."""
    fields: dict[str, Any] = {
        "route": route,
        "category": "math" if route == "reasoning" else "law",
        "confidence": 0.9,
        "use_reasoning": route == "reasoning",
        "model": "m",
        "policy_version": "p",
        "classifier_version": "c",
        "reason": "category",
        "truncated": False,
    }
    return RouteDecision(**(fields | overrides))


BODY = ChatBody.model_validate({"messages": [{"role": "user", "content": "q"}]})


def _grade(correct: bool | None) -> Grade | None:
    return None if correct is None else Grade(method="choice", correct=correct, extracted="B", reference="B")


def explored_pair(
    i: int,
    category: str,
    routed_route: str,
    routed: tuple[int, bool | None, str | None],
    shadow: tuple[int, bool | None, str | None],
    shadow_status: str = "completed",
    job: str = "job-1",
) -> tuple[RequestResult, ExplorationRecord]:
    """An explored request: its routed result and the other arm's record; (tokens, correct, final answer) each."""
    other = "direct" if routed_route == "reasoning" else "reasoning"
    common: dict[str, Any] = {"request_id": f"{job}/q-{i}", "job_id": job, "custom_id": f"q-{i}", "line": i}
    r = RequestResult(
        **common,
        status="completed",
        route=route_decision(routed_route, category=category, explore=True),
        model="m",
        usage=Usage(completion_tokens=routed[0]),
        attempts=1,
        llm_latency_s=0.1,
        latency_s=0.2,
        finished_at=1.0,
        grade=_grade(routed[1]),
        final_answer=routed[2],
    )
    e = ExplorationRecord(
        **common,
        status=shadow_status,  # type: ignore[arg-type]
        route=route_decision(other, category=category, explore=True),
        body=BODY,
        model="m",
        usage=Usage(completion_tokens=shadow[0]),
        attempts=1,
        llm_latency_s=0.1,
        finished_at=1.0,
        grade=_grade(shadow[1]),
        final_answer=shadow[2],
    )
    return r, e


def batch_meta(job_id: str = "batch_test", state: str = "validating", **overrides: Any) -> JobMeta:
    """An API batch's record as ``create_batch`` leaves it (owner alice, a 24 h window)."""
    fields: dict[str, Any] = {
        "job_id": job_id,
        "total": 0,
        "source": "api:file-in",
        "submitted_at": 1_700_000_000.25,
        "state": state,
        "owner": "alice",
        "batch": BatchInfo(input_file_id="file-in"),
        "expires_at": 1_700_086_400.25,
    }
    return JobMeta(**(fields | overrides))


def request_line(custom_id: str, content: str = "What is 2+2?", **body: Any) -> bytes:
    """One line of an OpenAI Batch input file (no newline)."""
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 5} | body,
    }
    return json.dumps(line).encode()


def input_record(size: int, key: str = "file-in") -> FileRecord:
    return FileRecord(
        id=key,
        owner="alice",
        filename="in.jsonl",
        purpose="batch",
        bytes=size,
        lines=0,
        created_at=1.0,
        storage_key=key,
    )
