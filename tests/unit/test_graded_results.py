"""A completed result carries its grade (when the prompt has a reference) and its final answer."""

from __future__ import annotations

import time
from typing import Any

from schemas.chat import ChatBody
from schemas.messages import PromptMessage, RoutedMessage
from schemas.records import RequestResult
from tests.factories import route_decision
from workers.inference.client import Completion
from workers.inference.results import completed, graded


def body(metadata: dict[str, str] | None) -> ChatBody:
    return ChatBody.model_validate({"messages": [{"role": "user", "content": "q"}], "metadata": metadata})


def reply(content: str | None, reasoning: str | None = None) -> Completion:
    message: dict[str, Any] = {"role": "assistant", "content": content, "reasoning_content": reasoning}
    return Completion(
        status_code=200,
        body={"model": "m", "choices": [{"message": message, "finish_reason": "stop"}], "usage": {}},
        attempts=1,
        latency_s=0.1,
    )


def result(metadata: dict[str, str] | None, c: Completion) -> RequestResult:
    prompt = PromptMessage(
        request_id="job-1/q-1", job_id="job-1", custom_id="q-1", line=1, body=body(metadata), submitted_at=time.time()
    )
    r = completed(RoutedMessage(prompt=prompt, route=route_decision("reasoning"), routed_at=time.time()), c)
    return RequestResult.model_validate_json(r.model_dump_json())  # as read back from Redis


def test_a_result_with_a_reference_is_graded_on_its_content_not_its_thinking() -> None:
    r = result({"reference": "C"}, reply("The answer is (C).", reasoning="The answer is (A), no wait"))
    assert r.grade is not None
    assert (r.grade.method, r.grade.correct, r.grade.extracted, r.grade.reference) == ("choice", True, "C", "C")
    assert r.final_answer == "C"
    wrong = result({"reference": "C"}, reply("The answer is (A).", reasoning="The answer is (C)"))
    assert wrong.grade is not None and not wrong.grade.correct and wrong.final_answer == "A"


def test_a_result_without_a_reference_has_a_final_answer_only() -> None:
    r = result(None, reply("Working: 6*7.\n#### 42"))
    assert r.grade is None and r.final_answer == "42"
    assert result({"note": "x"}, reply(None)).final_answer is None


def test_graded_uses_the_references_grader() -> None:
    g, final = graded(body({"answer": "1,000", "grader": "numeric"}), "about 1000.0 in all")
    assert g is not None and g.correct and final == "1000"
    assert graded(body({"reference": "Paris"}), None)[0] is not None
    assert graded(body({"reference": "Paris"}), None) == (graded(body({"reference": "Paris"}), None)[0], None)
