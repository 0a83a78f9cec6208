"""``thinkroute calibrate``: derive the policy's reasoning-score threshold from data and a target.

Targets: a share of prompts sent to reasoning, or a token budget (mean tokens per prompt, or a fraction
of the tokens of reasoning always on) on records with recorded tokens (Qwen3 file format). The data are
either such records (their ``calibration`` split by default) or, for a share, the MMLU-Pro validation
slice of the classifier (questions it was never trained on and that are not in its held-out report).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from schemas.outcomes import OutcomeRecord
from workers.classifier.model import Classification, Classifier
from workers.errors import InvalidInput
from workers.evaluation.replay import outcome, record_text
from workers.router.policy import Policy, ScoreRule

log = logging.getLogger(__name__)


def validation_texts(seed: int = 13) -> list[str]:
    """The classifier's MMLU-Pro validation slice, rendered as at evaluation (bare or MCQ prompt)."""
    from workers.classifier.corpus import load_items

    items, _ = load_items(seed)
    return [it.fixed_text(seed) for it in items if it.side == "validation"]


def _effective(policy: Policy, classes: Sequence[Classification]) -> tuple[list[bool | None], list[float]]:
    """Per prompt: fixed decision (True/False) or None when the score decides; score + offset."""
    fixed: list[bool | None] = []
    values: list[float] = []
    for c in classes:
        rule, _ = policy.rule_for(c)
        if rule.use_reasoning == "score" and c.reasoning_score is not None:
            fixed.append(None)
            values.append(c.reasoning_score + rule.score_offset)
        else:
            fixed.append(
                policy.wants_reasoning(rule, c.reasoning_score)[0]
                if rule.use_reasoning == "score"
                else bool(rule.use_reasoning)
            )
            values.append(math.nan)
    return fixed, values


def _candidates(values: Sequence[float]) -> list[float]:
    """Thresholds between consecutive distinct scores (descending), from 'none' to 'all'."""
    distinct = sorted({v for v in values if not math.isnan(v)}, reverse=True)
    if not distinct:
        return [math.inf]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(distinct)]
    return [distinct[0] + 1.0, *mids, distinct[-1] - 1.0]


def _share(fixed: Sequence[bool | None], values: Sequence[float], t: float) -> float:
    on = sum(1 for f, v in zip(fixed, values, strict=True) if f is True or (f is None and v >= t))
    return on / max(len(fixed), 1)


def threshold_for_share(fixed: Sequence[bool | None], values: Sequence[float], target: float) -> float:
    """The threshold whose share of reasoning is closest to ``target`` (ties: the lower share)."""
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target share must be in [0, 1], got {target}")
    return min(_candidates(values), key=lambda t: (abs(_share(fixed, values, t) - target), _share(fixed, values, t)))


def threshold_for_tokens(
    fixed: Sequence[bool | None],
    values: Sequence[float],
    records: Sequence[Mapping[str, Any]],
    efforts: Sequence[str | None],
    mean_tokens: float,
) -> float:
    """The lowest threshold (most reasoning) whose mean recorded tokens stay within ``mean_tokens``."""
    best = math.inf
    for t in _candidates(values):
        total = 0.0
        for f, v, rec, eff in zip(fixed, values, records, efforts, strict=True):
            use = f is True or (f is None and v >= t)
            total += outcome(rec, use, eff).tokens
        if total / max(len(records), 1) <= mean_tokens:
            best = min(best, t)
    return best


def calibrate(
    policy: Policy,
    classifier: Classifier,
    *,
    share: float | None = None,
    mean_tokens: float | None = None,
    token_ratio: float | None = None,
    records: Sequence[Mapping[str, Any]] | None = None,
    data_name: str = "",
) -> tuple[Policy, dict[str, Any]]:
    """A copy of ``policy`` with ``reasoning.threshold`` derived from the data, and what was achieved."""
    if sum(x is not None for x in (share, mean_tokens, token_ratio)) != 1:
        raise ValueError("give exactly one target: share, mean_tokens or token_ratio")
    if (mean_tokens is not None or token_ratio is not None) and not records:
        raise ValueError("a token budget needs records with recorded tokens (--replay FILE)")
    texts = [record_text(r) for r in records] if records else validation_texts()
    classes = classifier.classify(texts)
    fixed, values = _effective(policy, classes)
    base = policy.reasoning or ScoreRule(threshold=0.5)
    efforts = [policy.rule_for(c)[0].reasoning_effort for c in classes]
    if share is not None:
        t = threshold_for_share(fixed, values, share)
        target: dict[str, Any] = {"reasoning_share": share}
    else:
        assert records is not None
        always = sum(outcome(r, True).tokens for r in records) / len(records)
        budget = mean_tokens if mean_tokens is not None else always * float(token_ratio or 0.0)
        t = threshold_for_tokens(fixed, values, records, efforts, budget)
        target = {"mean_tokens": round(budget, 1)}
        if token_ratio is not None:
            target["token_ratio_of_always"] = token_ratio
    achieved: dict[str, Any] = {"reasoning_share": round(_share(fixed, values, t), 4)}
    if records:
        used = [f is True or (f is None and v >= t) for f, v in zip(fixed, values, strict=True)]
        tokens = [outcome(r, u, e).tokens for r, u, e in zip(records, used, efforts, strict=True)]
        achieved["mean_tokens"] = round(sum(tokens) / len(tokens), 1)
    info = {
        "target": target,
        "achieved": achieved,
        "data": data_name or "MMLU-Pro validation slice (never trained on, not in the held-out report)",
        "n": len(texts),
        "classifier_version": classifier.version,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    threshold = round(t, 6) if math.isfinite(t) else (1e9 if t > 0 else -1e9)
    new = policy.model_copy(update={"reasoning": base.model_copy(update={"threshold": threshold, "calibration": info})})
    log.info("calibrated threshold %.4f: %s", threshold, achieved)
    return new, info


def dump_policy(policy: Policy) -> str:
    """The policy as YAML (the calibration is recorded under ``reasoning.calibration``)."""
    data = policy.model_dump(mode="json", exclude_defaults=False)
    header = "# Routing policy; reasoning.threshold was derived by `thinkroute calibrate` (see calibration).\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def priority_threshold(priority: Sequence[float], share: float) -> float:
    """A threshold sending the top ``round(share * N)`` priorities to the expensive arm: midway between the
    last priority in and the first one out (ties may move the realised share; it is reported)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"target share must be in [0, 1], got {share}")
    p = sorted((v for v in priority if not math.isnan(v)), reverse=True)
    if not p:
        raise ValueError("no priorities")
    k = round(share * len(p))
    if k == 0:
        return p[0] + 1.0
    if k == len(p):
        return p[-1] - 1.0
    return (p[k - 1] + p[k]) / 2


def calibrate_records(
    records: Sequence[OutcomeRecord],
    cheap: str,
    expensive: str,
    classifier: Classifier,
    policy: Policy,
    *,
    share: float,
    split: str = "all",
    name: str = "",
) -> tuple[Policy, dict[str, Any]]:
    """The priority threshold for ``share`` on outcome records, what it achieves there, and (when the priority is
    the reasoning score) a copy of ``policy`` with that ``reasoning.threshold``."""
    from workers.evaluation.report import classify_arms, select_split

    chosen = select_split(records, split)
    if not chosen:
        raise InvalidInput(f"no records in the {split} split")
    pair, _, prio = classify_arms(chosen, cheap, expensive, classifier, policy)
    try:
        t = priority_threshold(prio, share)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    up = [p >= t for p in prio]
    acc = [e if u else c for u, c, e in zip(up, pair.cheap, pair.expensive, strict=True)]
    achieved: dict[str, Any] = {
        "expensive_share": round(sum(up) / len(up), 4),
        "accuracy": round(sum(acc) / len(acc), 4),
    }
    if pair.cheap_tokens is not None and pair.expensive_tokens is not None:
        tok = [e if u else c for u, c, e in zip(up, pair.cheap_tokens, pair.expensive_tokens, strict=True)]
        achieved["mean_tokens"] = round(sum(tok) / len(tok), 1)
    info: dict[str, Any] = {
        "threshold": round(t, 6),
        "priority": "gain model " + policy.gain.version if policy.gain is not None else "reasoning score",
        "target": {"expensive_share": share},
        "achieved": achieved,
        "achieved_on": "the calibration records themselves (not a held-out figure)",
        "data": f"{name} ({split} split, {pair.n} records with both {cheap} and {expensive})",
        "skipped_missing_arm": pair.skipped,
        "n": pair.n,
        "classifier_version": classifier.version,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if policy.gain is not None:
        return policy, info  # a gain threshold is a job's (its plan), not a policy field
    base = policy.reasoning or ScoreRule(threshold=0.5)
    calibration = {k: info[k] for k in ("target", "achieved", "data", "n", "classifier_version", "at")}
    new = policy.model_copy(
        update={"reasoning": base.model_copy(update={"threshold": round(t, 6), "calibration": calibration})}
    )
    return new, info
