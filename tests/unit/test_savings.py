"""The savings report on hand-built exploration pairs, against values computed by hand."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import ExplorationRecord, JobTotals, RequestResult, RouteTotals
from tests.factories import explored_pair as pair
from workers.submit.savings import B, report

# p1, p2: math, routed to reasoning; p3, p4: law, routed direct. Correct: router 1,1,1,0; reasoning arm 1,1,1,1;
# direct arm 0,1,1,0. Tokens (routed, shadow): (100,10) (200,20) (10,50) (30,150).
PAIRS = [
    pair(1, "math", "reasoning", (100, True, "B"), (10, False, "C")),
    pair(2, "math", "reasoning", (200, True, "A"), (20, True, "A")),
    pair(3, "law", "direct", (10, True, "D"), (50, True, "D")),
    pair(4, "law", "direct", (30, False, None), (150, True, "E")),
]
TOTALS = JobTotals(
    completed=40,
    routes={"reasoning": RouteTotals(completion_tokens=1000), "direct": RouteTotals(completion_tokens=400)},
)


def run(pairs: list[tuple[RequestResult, ExplorationRecord]], totals: JobTotals = TOTALS) -> dict[str, Any]:
    out = report(totals, [r for r, _ in pairs], [e for _, e in pairs])
    assert out is not None
    return out


def test_accuracy_tokens_and_the_ratio_estimator_by_hand() -> None:
    s = run(PAIRS)
    assert s["metric"] == "accuracy" and s["note"] is None
    assert s["explored"] == {"pairs": 4, "graded": 4, "incomplete": 0}
    assert s["est_accuracy"] == {"router": 0.75, "always": 1.0, "never": 0.5}
    assert s["ratio"] == 5.0  # (50 + 150) / (10 + 30): shadow reasoning over direct, on the direct-routed pairs
    # always = 1000 + 400 * 5 = 3000; routed = 1400; never = 400 + 1000 * (10 + 20) / (100 + 200) = 500
    assert s["tokens"] == {"router": 1400, "always": 3000, "never": 500}
    assert s["tokens_saved"] == 1600 and s["tokens_saved_pct"] == pytest.approx(53.33)


def test_per_category_by_hand() -> None:
    per = run(PAIRS)["per_category"]
    assert set(per) == {"math", "law"}
    assert per["math"]["est_accuracy"] == {"router": 1.0, "always": 1.0, "never": 0.5}
    assert (per["math"]["pairs"], per["math"]["tokens_saved"], per["math"]["tokens_saved_pct"]) == (2, 0, 0.0)
    assert per["law"]["est_accuracy"] == {"router": 0.5, "always": 1.0, "never": 0.5}
    # the reasoning arm spent 200 on the law pairs, the router 40: 80% saved; x 40/4 expansion = 1600
    assert (per["law"]["pairs"], per["law"]["tokens_saved"], per["law"]["tokens_saved_pct"]) == (2, 1600, 80.0)


def test_agreement_when_not_every_pair_is_graded() -> None:
    ungraded = [
        pair(i, r.route.category, r.route.route, (r.usage.completion_tokens, None, r.final_answer),
             (e.usage.completion_tokens, None, e.final_answer))
        for i, (r, e) in enumerate(PAIRS, 1)
    ]  # fmt: skip
    s = run(ungraded)
    assert s["metric"] == "agreement" and "always = 1 by definition" in s["note"]
    # router agrees: reasoning-routed by definition (p1, p2), p3 D=D, p4 no answer; never: C!=B, A=A, D=D, none
    assert s["est_accuracy"] == {"router": 0.75, "always": 1.0, "never": 0.5}
    assert s["explored"]["graded"] == 0
    one_graded = [PAIRS[0], *ungraded[1:]]
    assert run(one_graded)["metric"] == "agreement" and run(one_graded)["explored"]["graded"] == 1


def test_intervals_bracket_the_point_and_are_seeded() -> None:
    s = run(PAIRS)
    for arm in ("router", "always", "never"):
        lo, hi = s["ci95"][arm]
        assert lo <= s["est_accuracy"][arm] <= hi
    assert s["ci95"]["always"] == [1.0, 1.0]
    lo, hi = s["ci95"]["router"]
    assert lo < hi  # four pairs: wide
    lo, hi = s["ci95"]["tokens_saved"]
    assert lo <= s["tokens_saved"] <= hi
    lo, hi = s["ci95"]["tokens_saved_pct"]
    assert lo <= s["tokens_saved_pct"] <= hi
    assert run(PAIRS) == s  # seeded: the same report twice
    assert B == 2000


def test_incomplete_pairs_are_left_out_and_no_pair_is_no_report() -> None:
    failed = pair(5, "law", "direct", (10, True, "B"), (0, None, None), shadow_status="failed")
    s = run([*PAIRS, failed])
    assert s["explored"] == {"pairs": 4, "graded": 4, "incomplete": 1}
    assert s["est_accuracy"] == run(PAIRS)["est_accuracy"]
    assert report(TOTALS, [], []) is None
    assert report(TOTALS, [failed[0]], [failed[1]]) is None


def test_without_a_direct_routed_pair_the_saving_is_unknown() -> None:
    s = run(PAIRS[:2])
    assert s["ratio"] is None and s["tokens_saved"] is None and s["tokens_saved_pct"] is None
    all_reasoning = JobTotals(completed=2, routes={"reasoning": RouteTotals(completion_tokens=300)})
    s = run(PAIRS[:2], all_reasoning)  # nothing went direct: always is what was spent
    assert s["tokens_saved"] == 0 and s["tokens_saved_pct"] == 0.0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.booleans(), st.integers(1, 5000), st.integers(1, 5000)),
        min_size=1,
        max_size=40,
    )
)
def test_intervals_bracket_the_accuracies_on_any_sample(rows: list[tuple[bool, bool, bool, int, int]]) -> None:
    pairs = [
        pair(i, "c", "direct" if d else "reasoning", (t1, a, None), (t2, b, None))
        for i, (d, a, b, t1, t2) in enumerate(rows)
    ]
    s = run(pairs)
    for arm in ("router", "always", "never"):
        lo, hi = s["ci95"][arm]
        assert 0.0 <= lo <= s["est_accuracy"][arm] <= hi <= 1.0
    assert s["est_accuracy"]["router"] == pytest.approx(sum(r[1] for r in rows) / len(rows), abs=1e-4)
