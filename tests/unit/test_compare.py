"""`thinkroute compare`'s parts without a pipeline: the --policies list, the arms' plans, grading, intervals."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from schemas.chat import ChatBody
from schemas.records import Grade, RequestResult, Usage
from tests.factories import route_decision
from workers.cli.app import app
from workers.cli.compare import arm_plan, correct, parse_policies, reference_of, wilson
from workers.errors import InvalidInput
from workers.submit.batchfile import InputRequest


def req(cid: str, reference: str | None = "B") -> InputRequest:
    md = {"reference": reference} if reference is not None else None
    body = ChatBody.model_validate({"messages": [{"role": "user", "content": "q"}], "metadata": md})
    return InputRequest(custom_id=cid, line=1, body=body)


def result(answer: str | None, status: str = "completed", grade: Grade | None = None) -> RequestResult:
    return RequestResult(
        request_id="j/a",
        job_id="j",
        custom_id="a",
        line=1,
        status=status,  # type: ignore[arg-type]
        route=route_decision(),
        model="m",
        usage=Usage(),
        answer=answer,
        attempts=1,
        llm_latency_s=0.0,
        latency_s=0.0,
        finished_at=0.0,
        grade=grade,
    )


def test_policies_parse_in_order_with_their_routes() -> None:
    arms = parse_policies("never, router,always")
    assert [(a.name, a.route) for a in arms] == [("never", "direct"), ("router", None), ("always", "reasoning")]


def test_budget_arms_are_planned_budgets() -> None:
    arms = parse_policies("router,share=0.3,tokens=5000")
    assert [str(a.budget) for a in arms[1:]] == ["share=0.3", "tokens=5000"] and arms[0].budget is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "comma-separated"),
        ("router,,never", "comma-separated"),
        ("router,router", "named twice"),
        ("sometimes", "unknown policy 'sometimes'"),
        ("router,share=1.5", "share"),
        ("tokens=lots", "not a number"),
    ],
)
def test_bad_policies_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_policies(text)


def test_bad_policies_exit_2_with_one_line() -> None:
    r = CliRunner().invoke(app, ["compare", "loadgen/samples/prompts_20.jsonl", "--policies", "router,maybe"])
    assert r.exit_code == 2
    assert "unknown policy 'maybe'" in r.output


def test_arm_plans_force_every_prompt_or_none() -> None:
    requests = [req("a"), req("b"), req("c")]
    [always, never, router] = parse_policies("always,never,router")
    assert arm_plan(router, requests) is None
    job, plans = arm_plan(always, requests) or (None, [])
    assert job is not None and (job.budget, job.planned_reasoning) == ("always", 3)
    assert [(p.route, p.budget) for p in plans if p is not None] == [("reasoning", "always")] * 3
    job, plans = arm_plan(never, requests) or (None, [])
    assert job is not None and (job.budget, job.planned_reasoning) == ("never", 0)
    assert {p.route for p in plans if p is not None} == {"direct"} and len(plans) == 3


def test_grading_by_the_last_answer_letter_or_the_results_grade() -> None:
    assert reference_of(req("a", " C ")) == "C" and reference_of(req("a", None)) is None
    assert correct(result("The answer is (B)."), "B")
    assert correct(result("Answer: B"), "B")  # workers.grading's choice extractor
    assert not correct(result("The answer is (A). No wait, the answer is (C)."), "A")
    assert not correct(result("No answer letter is stored for this record (it was scored incorrect)."), "B")
    assert not correct(result("The answer is (B).", status="failed"), "B")
    assert not correct(None, "B")  # no result: counted wrong
    graded = Grade(method="choice", correct=False, extracted="A", reference="B")
    assert not correct(result("The answer is (B).", grade=graded), "B")  # the inference worker's grade wins


def test_wilson_interval_known_values() -> None:
    assert wilson(0, 0) is None
    assert wilson(26, 30) == [0.7032, 0.9469]
    lo, hi = wilson(0, 10) or [1.0, 0.0]
    assert lo == 0.0 and math.isclose(hi, 0.2775, abs_tol=1e-4)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_holds_the_estimate(kn: tuple[int, int]) -> None:
    k, n = kn
    lo, hi = wilson(k, n) or [1.0, 0.0]
    assert 0.0 <= lo <= round(k / n, 4) + 1e-4 and round(k / n, 4) - 1e-4 <= hi <= 1.0
