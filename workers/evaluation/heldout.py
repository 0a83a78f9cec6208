"""The held-out report of a built classifier artefact, measured through ``Classifier`` (the router's code)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from workers.classifier.corpus import Item, load_items
from workers.classifier.head import evaluate
from workers.classifier.model import Classifier
from workers.classifier.splits import GSM8K_SAMPLE, is_heldout, normalise
from workers.data import GSM8K_TRAIN, read_jsonl

N_GSM8K_CHECK = 500


def heldout_items(seed: int, items: list[Item] | None = None) -> list[Item]:
    """The MMLU-Pro held-out questions (no normalised question text shared with training)."""
    if items is None:
        items, _ = load_items(seed)
    return [it for it in items if it.source == "mmlu_pro" and is_heldout(seed, normalise(it.question))]


def unseen_gsm8k(seed: int) -> list[str]:
    """GSM8K train questions outside the sample used for training (another source's wording: math)."""
    gsm = [str(r["question"]).strip() for r in read_jsonl(GSM8K_TRAIN)]
    used = set(random.Random(seed).sample(range(len(gsm)), min(GSM8K_SAMPLE, len(gsm))))
    rest = [q for i, q in enumerate(gsm) if i not in used]
    return random.Random(seed + 1).sample(rest, min(N_GSM8K_CHECK, len(rest)))


def _accuracy(clf: Classifier, texts: list[str], labels: list[str]) -> dict[str, Any]:
    pred = [c.category for c in clf.classify(texts)]
    return {"accuracy": round(float(np.mean([p == y for p, y in zip(pred, labels, strict=True)])), 4), "n": len(texts)}


def measure(artifact_dir: Path, seed: int, items: list[Item] | None = None) -> dict[str, Any]:
    """Card sections ``metrics``, ``reasoning_score`` and ``other_metrics`` for the artefact in a dir."""
    if items is None:
        items, _ = load_items(seed)
    with Classifier.load(artifact_dir, providers="cpu") as clf:
        held = heldout_items(seed, items)
        held_pred = clf.classify([it.fixed_text(seed) for it in held])
        y = np.array([clf.labels.index(it.label) for it in held])
        pred = np.array([clf.labels.index(c.category) for c in held_pred])
        scores = np.array([c.reasoning_score for c in held_pred], dtype=np.float64)
        truth = np.array([it.aux[0] if it.aux else np.nan for it in held])
        ok = np.isfinite(truth)
        val = [it for it in items if it.side == "validation"]
        gsm = unseen_gsm8k(seed)
        return {
            "metrics": evaluate(y, pred, clf.labels),
            "reasoning_score": {
                "target": "share of the 29 recorded models answering wrong",
                "heldout_pearson": round(float(np.corrcoef(scores[ok], truth[ok])[0, 1]), 4),
            },
            "other_metrics": {
                "mmlu_pro_validation": _accuracy(clf, [it.fixed_text(seed) for it in val], [it.label for it in val]),
                "gsm8k_unseen_as_math": _accuracy(clf, gsm, ["math"] * len(gsm)),
            },
        }
