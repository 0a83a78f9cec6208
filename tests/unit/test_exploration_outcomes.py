"""A job's exploration sample as outcome records (workers.submit.outcomes): arms, correct (graded or by
agreement), tokens, latency, the prompt, what is left out; and the records read back by the converters."""

from __future__ import annotations

from pathlib import Path

from schemas.chat import ChatBody
from schemas.messages import AttemptSummary
from tests.factories import explored_pair, route_decision
from workers.evaluation.convert import convert
from workers.evaluation.outcomes import write_outcomes
from workers.submit.outcomes import outcomes_of


def test_graded_pairs_take_each_arms_grade_and_their_tokens() -> None:
    r, e = explored_pair(3, "math", "direct", (40, False, "C"), (900, True, "B"), job="j")
    r = r.model_copy(update={"llm_latency_s": 0.5})
    e = e.model_copy(update={"llm_latency_s": 7.25})
    [rec] = outcomes_of([r], [e])
    assert rec.id == "j/q-3" and rec.custom_id == "q-3" and rec.body == e.body and rec.prompt is None
    assert rec.category == "math" and rec.source == "exploration:j"
    assert rec.answer == "B"  # the grade's reference (the body carries none)
    assert rec.meta == {"label": "graded", "routed": "direct"}
    assert rec.outcomes["direct"].model_dump() == {"correct": 0.0, "tokens": 40, "latency_s": 0.5}
    assert rec.outcomes["reasoning"].model_dump() == {"correct": 1.0, "tokens": 900, "latency_s": 7.25}


def test_ungraded_pairs_are_marked_agreement_reasoning_right_direct_when_it_agrees() -> None:
    agree_r, agree_e = explored_pair(1, "law", "reasoning", (500, None, "D"), (20, None, "D"), job="j")
    differ_r, differ_e = explored_pair(2, "law", "direct", (30, None, "A"), (600, None, "E"), job="j")
    none_r, none_e = explored_pair(4, "law", "direct", (30, None, None), (600, None, "E"), job="j")
    recs = outcomes_of([agree_r, differ_r, none_r], [none_e, differ_e, agree_e])
    assert [r.id for r in recs] == ["j/q-1", "j/q-2", "j/q-4"]  # line order
    assert all(r.meta is not None and r.meta["label"] == "agreement" for r in recs)
    assert [(r.outcomes["reasoning"].correct, r.outcomes["direct"].correct) for r in recs] == [
        (1.0, 1.0),
        (1.0, 0.0),
        (1.0, 0.0),  # the direct arm without a final answer does not agree
    ]
    assert [r.meta["routed"] for r in recs if r.meta] == ["reasoning", "direct", "direct"]
    assert all(r.answer is None for r in recs)


def test_one_graded_arm_is_not_enough_and_reference_comes_from_the_body() -> None:
    body = ChatBody.model_validate({"messages": [{"role": "user", "content": "q"}], "metadata": {"reference": "B"}})
    r, e = explored_pair(1, "math", "reasoning", (500, True, "B"), (20, None, "B"), job="j")
    [rec] = outcomes_of([r], [e.model_copy(update={"body": body})])
    assert rec.meta is not None and rec.meta["label"] == "agreement" and rec.answer == "B"


def test_effort_names_the_arm_and_what_cannot_be_paired_is_counted_out() -> None:
    r, e = explored_pair(1, "math", "direct", (40, True, "B"), (900, True, "B"), job="j")
    e = e.model_copy(update={"route": route_decision("reasoning", reasoning_effort="low", explore=True)})
    failed_r, failed_e = explored_pair(2, "math", "direct", (40, True, "B"), (0, None, None), "failed", job="j")
    lone_r, lone_e = explored_pair(3, "math", "direct", (40, True, "B"), (9, True, "B"), job="j")
    esc_r, esc_e = explored_pair(5, "math", "direct", (40, True, "B"), (9, True, "B"), job="j")
    first = AttemptSummary(route=esc_r.route, model="m", confidence=0.1, threshold=0.5)
    esc_r = esc_r.model_copy(update={"escalated_from": first, "route": route_decision("reasoning", explore=True)})
    skipped: dict[str, int] = {}
    recs = outcomes_of([r, failed_r, esc_r], [e, failed_e, lone_e, esc_e], skipped)
    assert [set(x.outcomes) for x in recs] == [{"direct", "reasoning:low"}]
    assert skipped == {"failed": 1, "no_result": 1, "escalated": 1}
    assert lone_r.request_id not in {x.id for x in recs}


def test_exported_records_read_back_through_records_convert(tmp_path: Path) -> None:
    pairs = [
        explored_pair(i, "math", "direct", (10 * i, i % 2 == 0, "B"), (100 * i, True, "B"), job="j") for i in (1, 2)
    ]
    recs = outcomes_of([r for r, _ in pairs], [e for _, e in pairs])
    path = tmp_path / "x.jsonl"
    assert write_outcomes(path, recs) == 2
    back = convert("exploration", [str(path), str(path)])
    assert back.records == recs and back.stats["duplicates_dropped"] == 2
    assert back.stats["arms"] == ["direct", "reasoning"]
