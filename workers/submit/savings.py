"""A job's savings report from its exploration sample (pure): accuracy and tokens of the routed job against
always-reasoning and never-reasoning, with 95% intervals.

**The sample.** ``--explore F`` answers a seeded uniform random sample of the job by both arms: the routed
result (``RequestResult``) and the other arm's answer (``ExplorationRecord``). A *pair* is an explored request
whose two answers both completed; per pair we know what the router, always-reasoning and never-reasoning got.
Because the sample is uniform over the job, a mean over the pairs estimates the same mean over the whole job.

**The metric.** ``accuracy`` when every pair is graded on both arms (the prompts carry references,
``workers.grading``): per pair router = the routed answer's grade, always = the reasoning arm's, never = the
direct arm's. Otherwise ``agreement`` with the reasoning arm's final answer (a label-free signal): always = 1
by definition (the reasoning arm agrees with itself), router = 1 where it routed to reasoning, else whether the
direct answer agrees; never = whether the direct answer agrees. An arm without a final answer does not agree.

**Tokens** (completion tokens, thinking included). The routed job's are known: its totals (routed completion
tokens, plus escalated first attempts). Always-reasoning is estimated as the reasoning-routed tokens (what
they are under always too) plus the direct-routed tokens times a ratio estimator: over the explored
direct-routed pairs, the sum of their shadow (reasoning) completion tokens over the sum of their direct ones.
``tokens_saved = always_est - routed``; ``tokens_saved_pct = 100 * tokens_saved / always_est``. Never-reasoning
is estimated the same way from the reasoning-routed pairs. Without a direct-routed pair (and direct tokens
spent) the ratio, and so the saving, is unknown (None).

**Per category** (the decision's category): the same accuracies on that category's pairs; the saving there
is ``tokens_saved_pct`` within the sample (1 - routed / reasoning-arm tokens of its pairs) and
``tokens_saved`` its expansion to the job (N / n times the pairs' difference, N the job's completed results):
per-category savings come from the sample alone, so they need not add up to the job's ratio estimate.

**Intervals**: a percentile bootstrap over the pairs (seeded, B = 2000), paired: each replicate resamples
pairs, and every figure of a replicate (the three accuracies, the ratio, the saving) comes from the same
resample; per category within that category's pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schemas.records import ExplorationRecord, JobTotals, RequestResult
from workers.grading import agree

B = 2000
SEED = 0
NO_EXPLORATION = "run with --explore 0.05 to estimate savings"
NO_PAIRS = "no explored request has both answers yet"


@dataclass(frozen=True)
class Pair:
    """One explored request: the routed result and the other arm's answer."""

    routed: RequestResult
    shadow: ExplorationRecord

    @property
    def category(self) -> str:
        return self.routed.route.category

    @property
    def direct_routed(self) -> bool:
        return self.routed.route.route == "direct"

    @property
    def graded(self) -> bool:
        return self.routed.grade is not None and self.shadow.grade is not None

    @property
    def direct_agrees(self) -> float:
        """1 when the direct arm's final answer agrees with the reasoning arm's, else 0 (an arm without a final
        answer does not agree): the label-free signal of where thinking changed the answer."""
        reasoning, direct = (self.shadow, self.routed) if self.direct_routed else (self.routed, self.shadow)
        return float(agree(direct.final_answer, reasoning.final_answer) is True)


def pairs_of(results: Iterable[RequestResult], explorations: Iterable[ExplorationRecord]) -> tuple[list[Pair], int]:
    """The complete pairs (both answers completed), in request-id order, and how many explored were not."""
    routed = {r.request_id: r for r in results}
    out, incomplete = [], 0
    for e in sorted(explorations, key=lambda e: e.request_id):
        r = routed.get(e.request_id)
        if r is None or r.status != "completed" or e.status != "completed":
            incomplete += 1
        else:
            out.append(Pair(r, e))
    return out, incomplete


def _scores(pairs: Sequence[Pair], metric: str) -> NDArray[np.float64]:
    """Per pair: router, always, never (columns), 0/1."""
    rows = []
    for p in pairs:
        if metric == "accuracy":
            assert p.routed.grade is not None and p.shadow.grade is not None
            mine, other = float(p.routed.grade.correct), float(p.shadow.grade.correct)
            always, never = (other, mine) if p.direct_routed else (mine, other)
            rows.append((mine, always, never))
        else:
            agrees = p.direct_agrees
            rows.append((agrees if p.direct_routed else 1.0, 1.0, agrees))
    return np.asarray(rows, dtype=np.float64).reshape(len(pairs), 3)


def _tokens(pairs: Sequence[Pair]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    routed = np.array([p.routed.usage.completion_tokens for p in pairs], dtype=np.float64)
    shadow = np.array([p.shadow.usage.completion_tokens for p in pairs], dtype=np.float64)
    direct = np.array([p.direct_routed for p in pairs], dtype=bool)
    return routed, shadow, direct


def _ratio(num: Any, den: Any) -> NDArray[np.float64]:
    """num / den elementwise, NaN where den is 0 (arrays or scalars)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _interval(samples: NDArray[np.float64], digits: int = 4) -> list[float] | list[int] | None:
    """The 2.5th and 97.5th percentiles, rounded as the point they go with."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [2.5, 97.5])
    if digits == 0:
        return [round(float(lo)), round(float(hi))]
    return [round(float(lo), digits), round(float(hi), digits)]


def _round(x: float | None, digits: int = 4) -> float | None:
    """Rounded (an int at 0 digits); None when unknown (NaN)."""
    if x is None or not np.isfinite(x):
        return None
    return round(float(x)) if digits == 0 else round(float(x), digits)


def _resamples(n: int, seed: int) -> NDArray[np.int64]:
    return np.random.default_rng(seed).integers(0, n, size=(B, n))


def _accuracies(scores: NDArray[np.float64], idx: NDArray[np.int64]) -> dict[str, Any]:
    point = scores.mean(axis=0)
    boot = scores[idx].mean(axis=1)  # (B, 3)
    est = {arm: round(float(point[i]), 4) for i, arm in enumerate(("router", "always", "never"))}
    ci = {arm: _interval(boot[:, i]) for i, arm in enumerate(("router", "always", "never"))}
    return {"est_accuracy": est, "ci95": ci}


def report(
    totals: JobTotals, results: Iterable[RequestResult], explorations: Iterable[ExplorationRecord], seed: int = SEED
) -> dict[str, Any] | None:
    """The ``savings`` of a job (see the module docstring); None when no explored request has both answers."""
    pairs, incomplete = pairs_of(results, explorations)
    if not pairs:
        return None
    graded = sum(p.graded for p in pairs)
    metric = "accuracy" if graded == len(pairs) else "agreement"
    routes: Mapping[str, Any] = totals.routes
    reasoning_t = float(routes["reasoning"].completion_tokens) if "reasoning" in routes else 0.0
    direct_t = float(routes["direct"].completion_tokens) if "direct" in routes else 0.0
    actual = reasoning_t + direct_t + totals.escalations.completion_tokens

    scores = _scores(pairs, metric)
    routed, shadow, direct = _tokens(pairs)
    idx = _resamples(len(pairs), seed)
    out = _accuracies(scores, idx)

    def always_est(i: NDArray[np.int64] | None) -> NDArray[np.float64]:
        num, den = (shadow * direct), (routed * direct)
        ratio = _ratio(num[i].sum(axis=-1), den[i].sum(axis=-1)) if i is not None else _ratio(num.sum(), den.sum())
        return np.asarray(reasoning_t + (direct_t * ratio if direct_t else 0.0), dtype=np.float64)

    def never_est() -> float:
        ratio = _ratio((shadow * ~direct).sum(), (routed * ~direct).sum())
        return float(direct_t + (reasoning_t * ratio if reasoning_t else 0.0))

    always = float(always_est(None))
    boot_always = always_est(idx)
    saved = always - actual
    boot_saved = boot_always - actual
    out["ci95"]["tokens_saved"] = _interval(boot_saved, 0)
    out["ci95"]["tokens_saved_pct"] = _interval(100 * _ratio(boot_saved, boot_always), 2)
    out.update(
        metric=metric,
        explored={"pairs": len(pairs), "graded": graded, "incomplete": incomplete},
        tokens={"router": int(actual), "always": _round(always, 0), "never": _round(never_est(), 0)},
        tokens_saved=_round(saved, 0),
        tokens_saved_pct=_round(100 * saved / always if always > 0 else float("nan"), 2),
        ratio=_round(float(_ratio(np.sum(shadow * direct), np.sum(routed * direct)))),
        note=None
        if metric == "accuracy"
        else "agreement with the reasoning arm's final answer (always = 1 by definition): no references",
        per_category=_per_category(pairs, metric, totals.completed, seed),
    )
    return out


def _per_category(pairs: Sequence[Pair], metric: str, completed: int, seed: int) -> dict[str, Any]:
    scale = completed / len(pairs) if pairs else 0.0
    out: dict[str, Any] = {}
    for k, category in enumerate(sorted({p.category for p in pairs})):
        mine = [p for p in pairs if p.category == category]
        scores = _scores(mine, metric)
        routed, shadow, direct = _tokens(mine)
        reasoning_arm = np.where(direct, shadow, routed)  # what always-reasoning spent on these pairs
        idx = _resamples(len(mine), seed + 1 + k)
        row = _accuracies(scores, idx)
        diff = reasoning_arm - routed
        boot_pct = 100 * _ratio(diff[idx].sum(axis=1), reasoning_arm[idx].sum(axis=1))
        row["ci95"]["tokens_saved_pct"] = _interval(boot_pct, 2)
        row["ci95"]["tokens_saved"] = _interval(scale * diff[idx].sum(axis=1), 0)
        row.update(
            pairs=len(mine),
            tokens_saved=_round(scale * float(diff.sum()), 0),
            tokens_saved_pct=_round(float(100 * _ratio(diff.sum(), reasoning_arm.sum())), 2),
        )
        out[category] = row
    return out
