"""A batch's planning pass from its metadata: what is asked (budget, exploration), the planner an explore-only
batch gets (no classifier, the bodies never read), and a share budget classified chunk by chunk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from schemas.chat import ChatBody
from workers.api.planner import Planners, plan_request
from workers.classifier.model import Classification
from workers.errors import InvalidInput
from workers.router.plan import CLASSIFY_CHUNK, Budget, PlanArgs
from workers.router.policy import load_policy
from workers.settings import Settings

BODY = ChatBody.model_validate({"messages": [{"role": "user", "content": "2+2?"}]})


def test_what_the_metadata_asks() -> None:
    assert plan_request(None) is None and plan_request({"team": "x"}) is None
    assert plan_request({"thinkroute_explore": "0"}) is None
    assert plan_request({"thinkroute_reasoning_share": "0.25"}) == PlanArgs(Budget("share", 0.25))
    assert plan_request({"thinkroute_explore": "0.5", "thinkroute_explore_seed": "-3"}) == PlanArgs(None, 0.5, -3)
    for bad in ({"thinkroute_explore": "-0.1"}, {"thinkroute_explore": "inf"}, {"thinkroute_explore_seed": "1.5"}):
        with pytest.raises(InvalidInput):
            plan_request(bad)


def never_read() -> Iterator[ChatBody]:
    raise AssertionError("an explore-only plan reads no body")
    yield BODY  # pragma: no cover


def test_an_explore_only_plan_needs_no_classifier() -> None:
    planner = Planners(Settings()).for_batch(PlanArgs(None, 0.2, 5))
    assert planner is not None
    ids = [f"c{i}" for i in range(10)]
    job, plans = planner(ids, never_read())
    assert job is not None and (job.explore, job.explore_seed, job.explore_total, job.budget) == (0.2, 5, 2, None)
    assert sum(p is not None and p.explore for p in plans) == 2 and len(plans) == 10
    assert Planners(Settings()).for_batch(None) is None


class FakeClassifier:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.embeddings: list[bool] = []

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        self.calls.append(len(texts))
        self.embeddings.append(embeddings)
        start = sum(self.calls) - len(texts)
        return [Classification("math", 0.9, False, 10, reasoning_score=(start + i) / 1000) for i in range(len(texts))]


def test_a_share_budget_is_classified_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    planners = Planners(Settings())
    classifier = FakeClassifier()
    monkeypatch.setattr(planners, "_classifier", lambda: (classifier, load_policy(None)))
    planner = planners.for_batch(PlanArgs(Budget("share", 0.5)))
    assert planner is not None
    n = CLASSIFY_CHUNK + 10
    ids = [f"c{i}" for i in range(n)]
    job, plans = planner(ids, (BODY for _ in range(n)))
    assert classifier.calls == [CLASSIFY_CHUNK, 10]
    assert classifier.embeddings == [False, False]  # as the router: the shipped policy reads no embeddings
    assert job is not None and job.planned_reasoning == n // 2
    routes = [p.route for p in plans if p is not None]
    # the highest scores (the last half of the file) go to reasoning
    assert routes == ["direct"] * (n // 2) + ["reasoning"] * (n - n // 2)


def test_the_planning_pass_asks_for_embeddings_only_when_the_policy_reads_them() -> None:
    """The router lets the first tier decide unless the policy's gain head reads embeddings; a plan's ranking
    must come from the same classifications."""
    from types import SimpleNamespace
    from typing import cast

    from workers.router.plan import classify_job
    from workers.router.policy import Policy

    reads = cast(Policy, SimpleNamespace(gain=SimpleNamespace(needs_embeddings=True)))
    for policy, want in ((load_policy(None), False), (reads, True)):
        classifier = FakeClassifier()
        out = classify_job(classifier, [BODY] * 3, policy=policy)  # type: ignore[arg-type]  # a fake classifier
        assert len(out) == 3 and classifier.embeddings == [want]


def test_the_cli_planning_pass_loads_embeddings_only_when_the_policy_reads_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """``thinkroute submit|run --reasoning-share`` loads the policy's classifier as the router decides with it:
    without sentence embeddings for the shipped policy (the first tier then decides what it is sure of), and
    classifies every prompt once, a chunk at a time."""
    from workers.classifier.model import Classifier
    from workers.cli.planning import make_plan

    loads: list[tuple[object, bool]] = []

    class Loaded(FakeClassifier):
        labels = sorted(load_policy(None).categories)
        version = "fake"

        def close(self) -> None:
            pass

        def __enter__(self) -> Loaded:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    classifier = Loaded()

    def load(artifact, **kw):  # type: ignore[no-untyped-def]
        loads.append((artifact, kw["embeddings"]))
        return classifier

    monkeypatch.setattr(Classifier, "load", staticmethod(load))
    s = Settings(router={"artifact_dir": tmp_path})  # type: ignore[arg-type]  # pydantic coerces the dict
    n = CLASSIFY_CHUNK + 3
    plan = make_plan(
        s, [f"c{i}" for i in range(n)], lambda: (BODY for _ in range(n)), PlanArgs(Budget("share", 0.5)), True
    )
    assert loads == [(tmp_path, False)]
    assert classifier.calls == [CLASSIFY_CHUNK, 3] and classifier.embeddings == [False, False]
    assert plan is not None and plan[0] is not None and plan[0].planned_reasoning == (n + 1) // 2  # round half up
