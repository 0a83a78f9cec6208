"""The first tier against the encoder alone, side by side on the held-out split (``thinkroute eval-tier``).

Both are the artefact's ``Classifier`` (the router's code), loaded on CPU with and without ``lexical.npz``; each
figure is measured on the same prompts for both, with a paired bootstrap interval (95%, 2,000 resamples) for the
differences that decide "equal accuracy": category accuracy, the category table's reasoning decision, and the
reasoning score's Pearson correlation with the 29-model error rate. Speed: prompts/s over the held-out prompts,
alternating encoder, tier, tier, encoder (``loadgen bench`` measures it at the router's batch sizes too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers import data
from workers.classifier.corpus import Item, load_items
from workers.classifier.head import evaluate
from workers.classifier.model import Classification, Classifier
from workers.data.prompts import format_mcq_prompt
from workers.evaluation.heldout import heldout_items, unseen_gsm8k
from workers.router.policy import load_policy

REASONING_TABLE = ("math", "physics", "chemistry")  # the published table's reasoning categories
BOOTSTRAP = 2000
F64 = npt.NDArray[np.float64]


def bootstrap(a: F64, b: F64, stat: Callable[[F64], float], seed: int = 0) -> list[float]:
    """[diff, low, high]: ``stat(b) - stat(a)`` on the same rows, and its paired 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    n = len(a)
    diffs = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, n, n)
        diffs.append(stat(b[i]) - stat(a[i]))
    low, high = np.quantile(diffs, [0.025, 0.975])
    return [round(stat(b) - stat(a), 4), round(float(low), 4), round(float(high), 4)]


def _pearson(rows: F64) -> float:
    return float(np.corrcoef(rows[:, 0], rows[:, 1])[0, 1])


def _mean(rows: F64) -> float:
    return float(rows.mean())


def _sources(items: Sequence[Item]) -> list[str]:
    """Each MMLU-Pro item's original source (``src`` before its first dash: ori_mmlu, stemez, ...)."""
    src = {int(r["question_id"]): str(r["src"]).split("-")[0] for r in data.read_jsonl(data.MMLU_PRO_TEST)}
    return [src.get(it.question_ids[0], "unknown") if it.question_ids else "unknown" for it in items]


def _timed(clf: Classifier, texts: list[str]) -> tuple[list[Classification], float]:
    clf.classify(texts[:32], False)  # warm-up
    start = time.perf_counter()
    out = clf.classify(texts, False)
    return out, len(texts) / (time.perf_counter() - start)


def compare(artifact_dir: Path, seed: int, limit: int | None = None) -> dict[str, Any]:
    """Every figure of the README's first-tier table, for the artefact in ``artifact_dir``; ``limit``: only the
    first ``limit`` held-out and GSM8K questions (a quick look; the README's figures use all of them)."""
    items, _ = load_items(seed)
    held = heldout_items(seed, items)[:limit]
    texts = [it.fixed_text(seed) for it in held]
    mcq = [format_mcq_prompt(it.question, list(it.options)) for it in held]
    gsm = unseen_gsm8k(seed)[:limit]
    rule = load_policy(None).reasoning
    if rule is None:
        raise ValueError("the default policy has no reasoning threshold")
    threshold = rule.threshold
    runs: dict[bool, dict[str, Any]] = {False: {"per_s": []}, True: {"per_s": []}}
    for first in (False, True, True, False):
        with Classifier.load(artifact_dir, providers="cpu", first_tier=first) as clf:
            if first and clf.tier is None:
                raise ValueError(f"{artifact_dir} has no first tier (lexical.npz)")
            classes, per_s = _timed(clf, texts)
            r = runs[first]
            r["per_s"].append(round(per_s, 1))
            if "classes" not in r:
                r["labels"] = clf.labels
                r["classes"] = classes
                r["mcq"] = clf.classify(mcq, False)
                r["gsm"] = clf.classify(gsm, False)
    labels: list[str] = runs[False]["labels"]
    y = np.array([labels.index(it.label) for it in held])
    truth = np.array([it.aux[0] if it.aux else np.nan for it in held])
    ok = np.isfinite(truth)
    think_true = np.isin(np.array([it.label for it in held]), REASONING_TABLE)
    sources = np.array(_sources(held))
    out: dict[str, Any] = {"n": len(held), "n_gsm8k": len(gsm), "policy_threshold": threshold}
    cols: dict[str, dict[bool, F64]] = {"right": {}, "table": {}, "score": {}}
    for first, r in runs.items():
        classes = r["classes"]
        pred = np.array([labels.index(c.category) for c in classes])
        scores = np.array([c.reasoning_score for c in classes], dtype=np.float64)
        cols["right"][first] = (pred == y).astype(np.float64)
        cols["table"][first] = (np.isin(np.array([c.category for c in classes]), REASONING_TABLE) == think_true) * 1.0
        cols["score"][first] = np.stack([scores[ok], truth[ok]], axis=1)
        metrics = evaluate(y, pred, labels)
        out["first_tier" if first else "encoder"] = {
            "accuracy": round(float(cols["right"][first].mean()), 4),
            "macro_f1": metrics["heldout_macro_f1"],
            "worst_f1": dict(
                sorted(((k, v["f1"]) for k, v in metrics["per_category"].items()), key=lambda kv: kv[1])[:3]
            ),
            "accuracy_mcq": round(
                float(np.mean([c.category == it.label for c, it in zip(r["mcq"], held, strict=True)])), 4
            ),
            "table_agreement": round(float(cols["table"][first].mean()), 4),
            "by_source": {
                s: round(float(cols["right"][first][sources == s].mean()), 4) for s in sorted(set(sources.tolist()))
            },
            "gsm8k_as_math": round(float(np.mean([c.category == "math" for c in r["gsm"]])), 4),
            "score_pearson": round(_pearson(cols["score"][first]), 4),
            "reasoning_share": round(float(np.mean(scores >= threshold)), 4),
            "tier_share": round(float(np.mean([c.tier == "lexical" for c in classes])), 4),
            "tier_share_mcq": round(float(np.mean([c.tier == "lexical" for c in r["mcq"]])), 4),
            "tier_share_gsm8k": round(float(np.mean([c.tier == "lexical" for c in r["gsm"]])), 4),
            "per_s": r["per_s"],
        }
    out["by_source_n"] = {s: int((sources == s).sum()) for s in sorted(set(sources.tolist()))}
    out["diff"] = {
        "accuracy": bootstrap(cols["right"][False], cols["right"][True], _mean),
        "table_agreement": bootstrap(cols["table"][False], cols["table"][True], _mean),
        "score_pearson": bootstrap(cols["score"][False], cols["score"][True], _pearson),
    }
    out["speed_ratio"] = round(sum(runs[True]["per_s"]) / sum(runs[False]["per_s"]), 3)
    return out
