"""The accuracy/cost report (`workers.evaluation.curve.report`): hand-computed cases, the closed-form random
arm against enumeration, the oracle's bound, bootstrap intervals."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.evaluation.curve import CURVE_SHARES, SHARES, accuracy_at, report

NO_BOOT = 0  # point estimates only


def at(result: dict[str, Any], share: float) -> dict[str, Any]:
    return next(p for p in result["curve"] if p["share"] == share)


def value(stat: dict[str, Any]) -> float:
    return float(stat["value"])


def test_hand_computed_share_case() -> None:
    cheap = np.array([0.0, 0.0, 0.0, 0.0])
    exp = np.array([1.0, 1.0, 1.0, 0.0])
    prio = [1.0, 2.0, 3.0, 4.0]  # the worst ranking: the record that does not gain first
    r = report(prio, cheap, exp, resamples=NO_BOOT)
    assert r["cost"].startswith("share")
    assert [value(at(r, s)["router"]["accuracy"]) for s in (0.0, 0.25, 0.5, 0.75, 1.0)] == [0, 0, 0.25, 0.5, 0.75]
    assert [value(at(r, s)["random"]["accuracy"]) for s in (0.25, 0.5)] == [0.1875, 0.375]
    assert [value(at(r, s)["oracle"]["accuracy"]) for s in (0.25, 0.5, 0.75, 1.0)] == [0.25, 0.5, 0.75, 0.75]
    reach = r["cost_to_95"]  # target 0.95 * 0.75
    assert reach["target_accuracy"] == 0.7125
    assert [value(reach[p]["share"]) for p in ("router", "random", "oracle")] == [1.0, 0.95, 0.75]
    assert len(r["curve"]) == len(CURVE_SHARES) == 21 and [p["share"] for p in r["at_shares"]] == list(SHARES)


def test_hand_computed_token_case() -> None:
    cheap, exp = np.zeros(4), np.array([1.0, 1.0, 1.0, 0.0])
    ct, et = np.full(4, 10.0), np.full(4, 110.0)
    r = report([1.0, 2.0, 3.0, 4.0], cheap, exp, ct, et, resamples=NO_BOOT)
    assert r["cost"] == "mean tokens per prompt"
    half = at(r, 0.5)
    assert value(half["router"]["cost"]) == 60.0 and value(half["router"]["accuracy"]) == 0.25
    assert value(half["random"]["accuracy"]) == 0.375 and value(half["oracle"]["accuracy"]) == 0.5
    reach = r["cost_to_95"]
    assert [value(reach[p]["cost"]) for p in ("router", "random", "oracle")] == [110.0, 105.0, 85.0]
    assert value(r["arms"]["cheap"]["cost"]) == 10.0 and value(r["arms"]["expensive"]["cost"]) == 110.0


def test_the_oracle_spends_where_the_expensive_arm_is_dearer_but_gains() -> None:
    # expensive arm cheaper in tokens on record 1 (gain), dearer on record 0 (gain): the free gain first
    cheap, exp = np.array([0.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0])
    ct, et = np.array([100.0, 100.0, 100.0]), np.array([400.0, 40.0, 100.0])
    r = report([0.0, 0.0, 0.0], cheap, exp, ct, et, resamples=NO_BOOT)
    # the router at 1/3 share sends record 0 (cost (400+100+100)/3 = 200); the oracle there takes both gains
    third = next(p for p in r["curve"] if p["share"] == 0.35)
    assert value(third["router"]["cost"]) == 200.0 and value(third["oracle"]["accuracy"]) == 1.0


binary = st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 5)), min_size=1, max_size=7)


@given(binary, st.sampled_from(SHARES))
def test_random_is_the_mean_over_every_subset(rows: list[tuple[bool, bool, int]], share: float) -> None:
    cheap = np.array([float(c) for c, _, _ in rows])
    exp = np.array([float(e) for _, e, _ in rows])
    k = round(share * len(rows))
    subsets = list(itertools.combinations(range(len(rows)), k))
    brute = np.mean([np.where(np.isin(np.arange(len(rows)), s), exp, cheap).mean() for s in subsets])
    got = value(
        next(p for p in report(np.zeros(len(rows)), cheap, exp, resamples=NO_BOOT)["at_shares"] if p["share"] == share)[
            "random"
        ]["accuracy"]
    )
    assert got == pytest.approx(round(float(brute), 4), abs=1e-4)


fractions = st.lists(
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(-10, 10, allow_nan=False)), min_size=1, max_size=40
)


@given(fractions)
def test_oracle_beats_any_ranking_at_equal_share(rows: list[tuple[float, float, float]]) -> None:
    cheap = np.array([c for c, _, _ in rows])
    exp = np.array([e for _, e, _ in rows])
    prio = np.array([p for _, _, p in rows])
    r = report(prio, cheap, exp, resamples=NO_BOOT)
    for p in r["curve"]:
        router = accuracy_at(prio, cheap, exp, p["share"])
        assert value(p["router"]["accuracy"]) == pytest.approx(round(router, 4), abs=1e-4)
        assert value(p["oracle"]["accuracy"]) >= value(p["router"]["accuracy"]) - 1e-4
        assert value(p["oracle"]["accuracy"]) >= max(cheap.mean(), 0) - 1e-4


@settings(max_examples=30, deadline=None)
@given(binary.filter(lambda rows: len(rows) >= 3), st.integers(0, 2**16))
def test_intervals_contain_the_point_estimate(rows: list[tuple[bool, bool, int]], seed: int) -> None:
    cheap = np.array([float(c) for c, _, _ in rows])
    exp = np.array([float(e) for _, e, _ in rows])
    r = report([float(p) for _, _, p in rows], cheap, exp, resamples=200, seed=seed)
    stats = [r["arms"][a]["accuracy"] for a in ("cheap", "expensive")]
    stats += [p[k]["accuracy"] for p in r["curve"] for k in ("random",)]
    for s in stats:
        lo, hi = s["ci95"]
        assert lo - 1e-9 <= s["value"] <= hi + 1e-9, s


def test_the_bootstrap_is_seeded_and_paired() -> None:
    rng = np.random.default_rng(3)
    cheap = (rng.random(300) < 0.5).astype(float)
    exp = np.maximum(cheap, (rng.random(300) < 0.4).astype(float))
    prio = exp - cheap + rng.normal(0, 0.5, 300)  # an informative ranking
    a = report(prio, cheap, exp, resamples=300, seed=7)
    assert a == report(prio, cheap, exp, resamples=300, seed=7)
    assert a != report(prio, cheap, exp, resamples=300, seed=8)
    mid = at(a, 0.3)
    diff = mid["router_minus_random"]
    assert diff["value"] == pytest.approx(value(mid["router"]["accuracy"]) - value(mid["random"]["accuracy"]), abs=2e-4)
    # paired: the difference's interval is narrower than either accuracy's and here excludes 0
    width = diff["ci95"][1] - diff["ci95"][0]
    assert width < mid["router"]["accuracy"]["ci95"][1] - mid["router"]["accuracy"]["ci95"][0]
    assert diff["ci95"][0] > 0


def test_without_tokens_the_cost_is_the_share_in_every_resample() -> None:
    cheap, exp = np.array([1.0, 0.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    r = report([5.0, 4.0, 3.0, 2.0, 1.0], cheap, exp, resamples=200, seed=1)
    for p in r["curve"]:
        k = round(p["share"] * 5) / 5
        assert p["router"]["cost"] == {"value": k, "ci95": [k, k]}
    # 95% of 0.6 = 0.57: the router needs three of five on the expensive arm (0.4 -> 0.2 -> 0.4 -> 0.6)
    assert r["cost_to_95"]["router"]["share"]["value"] == 0.6
    assert r["cost_to_95"]["oracle"]["share"]["value"] == 0.2
