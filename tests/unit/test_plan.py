"""The planning pass (workers.router.plan): exact shares, token budgets within 5%, order independence, the
exploration sample, and the router following a planned route."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.messages import PromptPlan
from workers.classifier.model import Classification
from workers.errors import InvalidInput
from workers.router.plan import (
    Budget,
    budget_from_metadata,
    explore_sample,
    plan_classified,
    plan_job,
    round_half_up,
)
from workers.router.policy import Policy, TokenModel, gain_per_token, load_policy

LABELS = ["biology", "chemistry", "law", "math", "other", "physics"]
TOKENS = TokenModel(reasoning={"math": 3100.0, "law": 650.0, "chemistry": 2200.0, "*": 1394.0})


def job(n: int, seed: int, ties: bool) -> tuple[list[str], list[Classification]]:
    """n prompts with scores in [0, 1] (rounded to 2 decimals when ``ties``: many equal priorities)."""
    rng = random.Random(seed)
    ids, classes = [], []
    for i in range(n):
        score = rng.random()
        ids.append(f"q-{seed}-{i}")
        classes.append(
            Classification(
                category=rng.choice(LABELS),
                confidence=0.9,
                truncated=False,
                n_tokens=30,
                reasoning_score=round(score, 2) if ties else score,
            )
        )
    return ids, classes


def orders(ids: list[str], classes: list[Classification], seed: int) -> list[list[int]]:
    """The job as given, shuffled, sorted by score ascending and descending."""
    idx = list(range(len(ids)))
    shuffled = idx[:]
    random.Random(seed + 1).shuffle(shuffled)
    by_score = sorted(idx, key=lambda i: classes[i].reasoning_score or 0.0)
    return [idx, shuffled, by_score, by_score[::-1]]


def plan_in(policy: Policy, ids: list[str], classes: list[Classification], order: list[int], budget: Budget):  # type: ignore[no-untyped-def]
    jp, plans = plan_classified(policy, [ids[i] for i in order], [classes[i] for i in order], budget)
    return jp, {ids[i]: p for i, p in zip(order, plans, strict=True)}


POLICY = load_policy(None, LABELS).model_copy(update={"tokens": TOKENS})


@pytest.mark.parametrize("n", [200, 20_000])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    share=st.floats(0.0, 1.0),
    seed=st.integers(0, 10**6),
    ties=st.booleans(),
)
def test_a_share_plans_exactly_round_s_n_whatever_the_order(n: int, share: float, seed: int, ties: bool) -> None:
    ids, classes = job(n, seed, ties)
    budget = Budget("share", share)
    want = round_half_up(share * n)
    first = None
    for order in orders(ids, classes, seed):
        jp, plans = plan_in(POLICY, ids, classes, order, budget)
        assert jp is not None
        reasoning = {cid for cid, p in plans.items() if p is not None and p.route == "reasoning"}
        assert len(reasoning) == jp.planned_reasoning == want
        assert abs(len(reasoning) / n - share) <= 0.02
        assert all(p is not None and p.budget == str(budget) and p.route is not None for p in plans.values())
        if want:
            # the highest priorities: nothing routed direct ranks above the threshold
            assert jp.threshold is not None
            direct = [c.reasoning_score for i, c in enumerate(classes) if ids[i] not in reasoning]
            assert all(s is not None and s <= jp.threshold for s in direct)
            assert all(plans[cid] is not None and (plans[cid].priority or 0) >= jp.threshold for cid in reasoning)  # type: ignore[union-attr]
        if first is None:
            first = (jp, plans)
        else:
            assert (jp, plans) == first  # the same plan whatever the order of the prompts


@pytest.mark.parametrize("n", [200, 20_000])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frac=st.floats(0.0, 1.0), seed=st.integers(0, 10**6), ties=st.booleans())
def test_a_token_budget_is_met_within_5_percent_whatever_the_order(n: int, frac: float, seed: int, ties: bool) -> None:
    ids, classes = job(n, seed, ties)
    costs = [TOKENS.expected(c.category) for c in classes]
    low = 10 * max(costs)  # "at least a few prompts' worth": ten of the costliest
    target = low + frac * (sum(costs) - low)
    budget = Budget("tokens", target)
    first = None
    for order in orders(ids, classes, seed):
        jp, plans = plan_in(POLICY, ids, classes, order, budget)
        assert jp is not None and jp.expected_reasoning_tokens is not None
        spent = sum(costs[i] for i, cid in enumerate(ids) if plans[cid].route == "reasoning")  # type: ignore[union-attr]
        assert spent == pytest.approx(jp.expected_reasoning_tokens)
        assert abs(spent - target) <= 0.05 * target
        assert abs(spent - target) <= max(costs) / 2  # the prefix stops within half a prompt of the target
        if first is None:
            first = (jp, plans)
        else:
            assert (jp, plans) == first


def test_a_token_budget_ranks_by_gain_per_expected_token() -> None:
    # equal scores: the cheaper category first; a far better score beats a cheaper one
    ids = ["math-hi", "law-same", "math-same", "chem-low"]
    cats = ["math", "law", "math", "chemistry"]
    scores = [0.95, 0.5, 0.5, 0.1]
    classes = [
        Classification(category=c, confidence=0.9, truncated=False, n_tokens=10, reasoning_score=s)
        for c, s in zip(cats, scores, strict=True)
    ]
    jp, plans = plan_classified(POLICY, ids, classes, Budget("tokens", 3100 + 650))
    assert jp is not None and jp.expected_reasoning_tokens == 3750
    assert [cid for cid, p in zip(ids, plans, strict=True) if p and p.route == "reasoning"] == ["math-hi", "law-same"]
    assert jp.threshold == pytest.approx(0.95 / 3100)  # the last one taken: law-same (0.5 / 650) ranked first


@given(p=st.floats(-10, 10), e1=st.floats(1, 10_000), e2=st.floats(1, 10_000), q=st.floats(-10, 10))
def test_gain_per_token_is_monotone(p: float, e1: float, e2: float, q: float) -> None:
    lo, hi = sorted((e1, e2))
    assert gain_per_token(p, hi) <= gain_per_token(p, lo)  # dearer never ranks higher
    if p <= q:
        assert gain_per_token(p, e1) <= gain_per_token(q, e1)  # better never ranks lower
    if p > 0 >= q:
        assert gain_per_token(q, lo) <= gain_per_token(p, hi)  # any gain above any loss


def test_always_and_never_need_no_classifier_and_no_budget_is_no_plan() -> None:
    prompts = [(f"r{i}", None) for i in range(7)]
    jp, plans = plan_job(None, None, prompts, Budget("always"))  # type: ignore[arg-type]
    assert jp is not None and (jp.budget, jp.planned_reasoning, jp.threshold) == ("always", 7, None)
    assert all(p is not None and (p.route, p.budget) == ("reasoning", "always") for p in plans)
    jp, plans = plan_job(None, None, prompts, Budget("never"))  # type: ignore[arg-type]
    assert jp is not None and jp.planned_reasoning == 0 and {p.route for p in plans if p} == {"direct"}
    assert plan_job(None, None, prompts, None) == (None, [None] * 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the classifier"):
        plan_job(None, None, prompts, Budget("share", 0.5))  # type: ignore[arg-type]


@given(n=st.integers(0, 400), f=st.floats(0.001, 1.0), seed=st.integers(0, 2**32))
def test_exploration_is_an_exact_seeded_sample_independent_of_order(n: int, f: float, seed: int) -> None:
    ids = [f"id-{i}" for i in range(n)]
    sample = explore_sample(ids, f, seed)
    assert len(sample) == round_half_up(f * n) and sample <= set(ids)
    assert explore_sample(ids[::-1], f, seed) == sample
    jp, plans = plan_classified(None, ids, None, None, f, seed)
    assert jp is not None and jp.explore_total == len(sample) and jp.budget is None
    # without a budget only the explored prompts carry a plan, and it decides no route
    assert {cid for cid, p in zip(ids, plans, strict=True) if p is not None} == sample
    assert all(p.explore and p.route is None for p in plans if p is not None)


def test_exploration_samples_differ_by_seed_and_join_a_budget() -> None:
    ids = [f"id-{i}" for i in range(1000)]
    assert explore_sample(ids, 0.05, 1) != explore_sample(ids, 0.05, 2)
    jp, plans = plan_classified(None, ids, None, Budget("never"), 0.05, 1)
    assert jp is not None and (jp.explore, jp.explore_seed, jp.explore_total) == (0.05, 1, 50)
    assert sum(p.explore for p in plans if p) == 50 and all(p is not None and p.route == "direct" for p in plans)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("share=0.3", "share", 0.3),
        ("tokens=50000", "tokens", 50000.0),
        ("always", "always", None),
        ("never", "never", None),
    ],
)
def test_budget_parses_and_prints_back(text: str, kind: str, value: float | None) -> None:
    b = Budget.parse(text)
    assert (b.kind, b.value) == (kind, value)
    assert str(b) == text and Budget.parse(str(b)) == b


@given(
    st.one_of(
        st.builds(Budget, st.just("share"), st.floats(0, 1)),
        st.builds(Budget, st.just("tokens"), st.floats(1e-9, 1e15)),
    )
)
def test_every_budget_round_trips_through_its_string(b: Budget) -> None:
    assert Budget.parse(str(b)) == b


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("share=1.5", r"in \[0, 1\]"),
        ("share=-0.1", r"in \[0, 1\]"),
        ("tokens=0", "> 0"),
        ("tokens=-5", "> 0"),
        ("share=abc", "not a number"),
        ("share=nan", "finite"),
        ("share", "needs a value"),
        ("half", "unknown budget"),
        ("cost=3", "unknown budget"),
    ],
)
def test_a_bad_budget_is_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Budget.parse(text)


def test_budget_from_batch_metadata() -> None:
    assert budget_from_metadata(None) is None and budget_from_metadata({"x": "1"}) is None
    assert budget_from_metadata({"thinkroute_reasoning_share": "0.25"}) == Budget("share", 0.25)
    assert budget_from_metadata({"thinkroute_reasoning_tokens": "9000"}) == Budget("tokens", 9000)
    with pytest.raises(InvalidInput, match="exclude each other"):
        budget_from_metadata({"thinkroute_reasoning_share": "0.2", "thinkroute_reasoning_tokens": "9"})
    with pytest.raises(InvalidInput, match=r"in \[0, 1\]"):
        budget_from_metadata({"thinkroute_reasoning_share": "2"})


def _c(score: float, category: str = "law", confidence: float = 0.9) -> Classification:
    return Classification(category=category, confidence=confidence, truncated=False, n_tokens=20, reasoning_score=score)


def test_the_router_follows_a_planned_route_with_the_rules_effort_and_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "p.yaml"
    f.write_text(
        "version: t1\ndefault: {use_reasoning: false}\ncategories:\n"
        "  math: {use_reasoning: false, reasoning_effort: high, model: big}\nmodels: {direct: small}\n"
    )
    p = load_policy(f, LABELS)
    plan = PromptPlan(route="reasoning", priority=0.2, threshold=0.1, budget="share=0.3", explore=True)
    d = p.decide(_c(0.2, "math"), "req", "M", "v", plan)
    assert (d.route, d.use_reasoning, d.reason, d.reasoning_effort, d.model) == (
        "reasoning",
        True,
        "plan:share=0.3",
        "high",
        "big",
    )
    assert (d.priority, d.job_threshold, d.budget, d.explore) == (0.2, 0.1, "share=0.3", True)
    # a planned direct route against a rule that always reasons
    always = load_policy(None, LABELS)
    d = always.decide(_c(0.99, "math"), None, "M", "v", PromptPlan(route="direct", budget="share=0.1"))
    assert (d.route, d.reasoning_effort, d.reason, d.model) == ("direct", None, "plan:share=0.1", "M")
    # no plan, or a plan without a route (exploration only): the policy decides, as before
    for plain in (None, PromptPlan(explore=True)):
        d = always.decide(_c(0.99), None, "M", "v", plain)
        assert (d.route, d.reason, d.priority, d.job_threshold, d.budget) == (
            "reasoning",
            "default+score",
            0.99,
            None,
            None,
        )
        assert d.explore == (plain is not None)


def test_a_token_plans_decision_records_priority_per_expected_token() -> None:
    plan = PromptPlan(route="direct", priority=0.5 / 650, threshold=0.001, budget="tokens=9000")
    d = POLICY.decide(_c(0.5, "law"), None, "M", "v", plan)
    assert d.priority == pytest.approx(0.5 / 650) and d.job_threshold == 0.001


def test_plans_are_signed_with_their_prompts_and_a_job_without_plan_is_unchanged() -> None:
    from schemas.chat import ChatBody
    from schemas.messages import PromptMessage
    from workers.store.integrity import mac_matches, sign
    from workers.submit.batchfile import InputRequest
    from workers.submit.encode import MAX_REQUEST_SIZE, encode_prompts

    secret = bytes(range(32))
    reqs = [
        InputRequest(
            line=i + 1, custom_id=f"c{i}", body=ChatBody.model_validate({"messages": [{"role": "user", "content": t}]})
        )
        for i, t in enumerate(("a", "b"))
    ]
    plain = encode_prompts("job-x", reqs, 10.0, secret, MAX_REQUEST_SIZE)
    assert plain == encode_prompts("job-x", reqs, 10.0, secret, MAX_REQUEST_SIZE, [None, None])
    for (_, value), req in zip(plain, reqs, strict=True):  # the message as it was before plans existed
        msg = PromptMessage(
            request_id=f"job-x/{req.custom_id}",
            job_id="job-x",
            custom_id=req.custom_id,
            line=req.line,
            body=req.body,
            submitted_at=10.0,
        )
        assert value == sign(msg, secret).model_dump_json().encode()
    _, plans = plan_job(None, None, [(r.custom_id, r.body) for r in reqs], Budget("never"))
    planned = encode_prompts("job-x", reqs, 10.0, secret, MAX_REQUEST_SIZE, plans)
    for (_, value), (_, before), p in zip(planned, plain, plans, strict=True):
        msg = PromptMessage.model_validate_json(value)
        assert msg.plan == p and mac_matches(msg, secret)
        assert msg.mac != PromptMessage.model_validate_json(before).mac  # the plan is covered
        flipped = msg.model_copy(update={"plan": msg.plan.model_copy(update={"route": "reasoning"})})  # type: ignore[union-attr]
        assert not mac_matches(flipped, secret)  # moving a prompt to the other arm breaks its MAC
    with pytest.raises(ValueError, match="1 plans for 2 requests"):
        encode_prompts("job-x", reqs, 10.0, secret, MAX_REQUEST_SIZE, plans[:1])


async def test_submit_records_the_plan_and_status_shows_it_against_the_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from schemas.messages import PromptMessage
    from tests.unit.test_submit_integrity import SIX, FakeProducer, FakeStore
    from workers.cli import console
    from workers.submit.jobs import submit, summary

    store, producer = FakeStore(), FakeProducer()
    plain = await submit(producer, store, "p", SIX, "f", job_id="job-a")  # type: ignore[arg-type]
    assert plain.plan is None and "plan" not in await summary(store, plain)  # type: ignore[arg-type]
    plan = plan_job(None, None, [(r.custom_id, r.body) for r in SIX], Budget("always"), 0.5, 3)
    store, producer = FakeStore(), FakeProducer()
    meta = await submit(producer, store, "p", SIX, "f", job_id="job-b", plan=plan)  # type: ignore[arg-type]
    assert meta.plan == plan[0] and store.meta is not None and store.meta.plan == plan[0]
    sent = [PromptMessage.model_validate_json(value) for value in producer.sent]
    assert [m.plan for m in sent] == plan[1]
    s = await summary(store, meta)  # type: ignore[arg-type]
    assert s["plan"]["budget"] == "always" and s["plan"]["planned"] == {
        "reasoning": 6,
        "share": 1.0,
        "expected_reasoning_tokens": None,
    }
    assert s["plan"]["realised"] == {"reasoning": 0, "share": 0.0, "reasoning_tokens": 0}  # nothing routed yet
    assert (s["plan"]["explore"], s["plan"]["explore_seed"], s["plan"]["explore_total"]) == (0.5, 3, 3)
    console.print_summary(s, as_json=False)
    printed = capsys.readouterr().out
    assert "plan always" in printed and "6 of 6 planned to reasoning (100.0%)" in printed
    assert "exploration: 3 of 6 prompts" in printed
