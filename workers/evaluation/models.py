"""Model routing on the 29-model MMLU-Pro records: a cost/accuracy curve for a small and a large model.

Questions: the classifier's held-out MMLU-Pro split (never trained on). Each question goes to the large
model when its reasoning score is at or above a threshold; thresholds are quantiles of the scores on the
validation slice (never the reported questions), for large-model shares 0, 10, ..., 100%. Tokens are the
recorded answer characters / 4 (modelled, as in the replay server).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workers.classifier.model import Classifier
from workers.data import MODEL_CORRECTNESS, read_csv
from workers.data.prompts import format_mcq_prompt
from workers.evaluation.calibrate import validation_texts

DEFAULT_SMALL = "Meta-Llama-3_1-8B-Instruct_5shots"
DEFAULT_LARGE = "gemini-1.5-pro-002_5shots"
CHARS_PER_TOKEN = 4.0
SHARES = tuple(round(0.1 * i, 1) for i in range(11))


def _records(names: Sequence[str]) -> dict[int, list[tuple[bool, float]]]:
    out: dict[int, list[tuple[bool, float]]] = {}
    for row in read_csv(MODEL_CORRECTNESS):
        vals = [(row.get(f"{n}__correct", ""), row.get(f"{n}__out_chars", "")) for n in names]
        if all(c != "" and ch != "" for c, ch in vals):
            out[int(row["question_id"])] = [(c == "1", float(ch) / CHARS_PER_TOKEN) for c, ch in vals]
    return out


def _point(correct: np.ndarray[Any, Any], tokens: np.ndarray[Any, Any], large: np.ndarray[Any, Any]) -> dict[str, Any]:
    """correct/tokens [N, 2] (small, large); large [N] bool."""
    pick = large.astype(int)
    rows = np.arange(len(pick))
    return {
        "accuracy": round(float(correct[rows, pick].mean()), 4),
        "mean_tokens": round(float(tokens[rows, pick].mean()), 1),
        "large_share": round(float(large.mean()), 4),
    }


def model_curve(
    classifier: Classifier, small: str = DEFAULT_SMALL, large: str = DEFAULT_LARGE, seed: int = 13
) -> dict[str, Any]:
    from workers.evaluation.heldout import heldout_items

    recs = _records([small, large])
    if not recs:
        raise ValueError(f"no question has records for both {small!r} and {large!r}")
    items = [it for it in heldout_items(seed) if any(q in recs for q in it.question_ids)]
    qids = [next(q for q in it.question_ids if q in recs) for it in items]
    texts = [format_mcq_prompt(it.question, it.options) for it in items]
    scores = np.array([c.reasoning_score or 0.0 for c in classifier.classify(texts)])
    val_scores = np.array([c.reasoning_score or 0.0 for c in classifier.classify(validation_texts(seed))])
    correct = np.array([[r[0] for r in recs[q]] for q in qids])
    tokens = np.array([[r[1] for r in recs[q]] for q in qids])
    curve = []
    for share in SHARES:
        t = np.inf if share == 0 else float(np.quantile(val_scores, 1 - share))
        point = _point(correct, tokens, scores >= t)
        curve.append({"target_share": share, "threshold": round(t, 4) if np.isfinite(t) else None, **point})
    oracle = ~correct[:, 0] & correct[:, 1]
    cats = [it.label for it in items]
    mid = float(np.quantile(val_scores, 0.5))
    per_category = {}
    for cat in sorted(set(cats)):
        m = np.array([c == cat for c in cats])
        per_category[cat] = {
            "n": int(m.sum()),
            "small": _point(correct[m], tokens[m], np.zeros(int(m.sum()), bool)),
            "large": _point(correct[m], tokens[m], np.ones(int(m.sum()), bool)),
            "router_50": _point(correct[m], tokens[m], scores[m] >= mid),
            "oracle": _point(correct[m], tokens[m], oracle[m]),
        }
    rng = np.random.default_rng(seed)
    random_50 = _point(correct, tokens, rng.random(len(qids)) < 0.5)
    return {
        "n": len(qids),
        "small": small,
        "large": large,
        "questions": "MMLU-Pro held-out split of the classifier (thresholds from the validation slice)",
        "policies": {
            "small": _point(correct, tokens, np.zeros(len(qids), bool)),
            "large": _point(correct, tokens, np.ones(len(qids), bool)),
            "random_50": random_50,
            "oracle": _point(correct, tokens, oracle),
        },
        "curve": curve,
        "per_category": per_category,
    }
