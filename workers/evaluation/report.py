"""``thinkroute eval --records``: a policy's priority on outcome records, as an accuracy/cost report.

Each record's prompt (`workers.evaluation.outcomes.record_text`) is classified by the router's classifier;
the priority is ``Policy.priority`` (the gain model when the policy has one, else the reasoning score). The
report is `workers.evaluation.curve.report`: the curve, accuracy at 10..90%, the cost to reach 95% of the
expensive arm's accuracy, random and oracle at the same cost, paired bootstrap intervals.

Splits: the shipped reasoning score was trained on the 29-model correctness of the classifier's training
questions, so on MMLU-Pro records only its held-out questions are fair (``heldout``: the same hash of the
normalised question as `workers.classifier.splits.is_heldout`, the questions of
`workers.evaluation.heldout.heldout_items`). ``heldout`` is the default for the 29-model records, ``all``
for the others (the Qwen3 questions are kept out of every training set; other files are not MMLU-Pro).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.outcomes import OutcomeRecord
from workers.classifier.model import Classification, Classifier
from workers.classifier.splits import is_heldout, normalise
from workers.errors import InvalidInput
from workers.evaluation.convert import MODELS_SOURCE
from workers.evaluation.curve import RESAMPLES, report
from workers.evaluation.outcomes import Arms, arms, record_text
from workers.router.policy import Policy

RECORD_SPLITS = ("heldout", "train", "all")
COSTS = ("auto", "share", "tokens")
SPLIT_SEED = 13  # the classifier's training seed (its split)


def default_split(records: Sequence[OutcomeRecord]) -> str:
    return "heldout" if any(r.source == MODELS_SOURCE for r in records) else "all"


def split_key(record: OutcomeRecord) -> str:
    return normalise(record.question if record.question is not None else record_text(record))


def select_split(records: Sequence[OutcomeRecord], split: str, seed: int = SPLIT_SEED) -> list[OutcomeRecord]:
    if split not in RECORD_SPLITS:
        raise InvalidInput(f"--split for records must be one of {', '.join(RECORD_SPLITS)}, got {split!r}")
    if split == "all":
        return list(records)
    want = split == "heldout"
    return [r for r in records if is_heldout(seed, split_key(r)) == want]


def priorities(classes: Sequence[Classification], policy: Policy) -> list[float]:
    out = []
    for c in classes:
        p = policy.priority(c)
        if p is None:
            raise InvalidInput("the classifier gives no reasoning score and the policy has no gain model: no priority")
        out.append(p)
    return out


def classify_arms(
    records: Sequence[OutcomeRecord], cheap: str, expensive: str, classifier: Classifier, policy: Policy
) -> tuple[Arms, list[Classification], list[float]]:
    pair = arms(records, cheap, expensive)
    classes = classifier.classify([record_text(records[i]) for i in pair.index])
    return pair, classes, priorities(classes, policy)


def evaluate_records(
    records: Sequence[OutcomeRecord],
    cheap: str,
    expensive: str,
    classifier: Classifier,
    policy: Policy,
    *,
    split: str,
    resamples: int = RESAMPLES,
    seed: int = 0,
    cost: str = "auto",
) -> dict[str, Any]:
    """The report on ``split``; ``cost``: ``tokens`` (both arms' token counts), ``share``, or ``auto`` (tokens
    when every record has them for both arms)."""
    if cost not in COSTS:
        raise InvalidInput(f"--cost must be one of {', '.join(COSTS)}, got {cost!r}")
    chosen = select_split(records, split)
    if not chosen:
        raise InvalidInput(f"no records in the {split} split")
    pair, classes, prio = classify_arms(chosen, cheap, expensive, classifier, policy)
    ct, et = pair.cheap_tokens, pair.expensive_tokens
    if cost == "tokens" and (ct is None or et is None):
        raise InvalidInput(f"--cost tokens: not every record has token counts for both {cheap} and {expensive}")
    if cost == "share":
        ct = et = None
    result = report(prio, pair.cheap, pair.expensive, ct, et, resamples, seed)
    if cost == "share" and pair.cheap_tokens is not None:
        result["cost"] = "share of prompts sent to the expensive arm (--cost share; the records have tokens)"
    decided = np.array([policy.decide(c, None, expensive, classifier.version).use_reasoning for c in classes])
    chosen_acc = np.where(decided, pair.expensive, pair.cheap)
    decisions: dict[str, Any] = {
        "expensive_share": round(float(decided.mean()), 4),
        "accuracy": round(float(chosen_acc.mean()), 4),
        "note": "the policy's own decisions (its rules and threshold) sent to the expensive arm; no interval",
    }
    if ct is not None and et is not None:
        decisions["cost"] = round(float(np.where(decided, et, ct).mean()), 1)
    return {
        "cheap": cheap,
        "expensive": expensive,
        "split": split,
        "records": {
            "in_file": len(records),
            "in_split": len(chosen),
            "used": pair.n,
            "skipped_missing_arm": pair.skipped,
        },
        "priority": "gain model " + policy.gain.version if policy.gain is not None else "reasoning score",
        "policy_version": policy.version,
        "classifier_version": classifier.version,
        **result,
        "policy_decisions": decisions,
    }
