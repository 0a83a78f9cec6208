"""``thinkroute eval-learning``: does routing learn from its own exploration? A simulated stream of jobs.

The records are cut into ``jobs`` jobs by a seeded shuffle. For each exploration rate F, job by job: a seeded
sample of round(F * size) of the job's questions is explored (answered by both arms: their recorded outcomes
become training records); the job is routed at a fixed ``share`` to the expensive arm with the gain model
fitted (``workers.evaluation.ridge.fit_cv``, penalty by inner CV) on every question explored in the earlier
jobs; and the job's never-explored questions are scored: accuracy of the new model's routing vs the shipped
reasoning score's vs random (expected) vs the oracle (the true gain), all at the same share of that job. The
first job has nothing to learn from (``new`` is null). Intervals: bootstrap 95% over the scored questions,
paired (the routing decisions fixed, the questions resampled); ``pooled`` is every job with a model.

Outcomes are the recorded ones (what the replay server answers). Questions: ``models``: the 29-model
MMLU-Pro records restricted to the classifier's held-out split (the shipped score was trained on the other
splits' 29-model correctness, so it is never scored on questions it saw); ``qwen3``: the 205 Qwen3-30B-A3B
records (never trained on), arms ``direct`` (thinking off) and ``reasoning`` (thinking on).

The loader is private and reads the shipped data directly; the shared outcome-records reader
(``workers.evaluation.outcomes``) can replace it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.classifier.gain import FeatureSet, feature_vector
from workers.classifier.splits import normalise
from workers.data import MODEL_CORRECTNESS, QWEN3_THINK, read_csv, read_jsonl
from workers.data.prompts import format_mcq_prompt
from workers.errors import InvalidInput
from workers.evaluation.curve import top_share
from workers.evaluation.fit import Labeller
from workers.evaluation.ridge import F, I, fit_cv

SPLIT_SEED = 13  # the classifier's split seed (workers.evaluation.heldout)
MIN_TRAIN = 10
BOOTSTRAP = 1000
POLICIES = ("new", "shipped", "random", "oracle")


@dataclass(frozen=True)
class Arrays:
    source: str
    cheap_name: str
    expensive_name: str
    texts: list[str]
    cheap: F
    expensive: F
    questions: str


def _column(row: dict[str, str], name: str) -> str:
    for key in (f"{name}__correct", f"{name}_5shots__correct"):
        if key in row:
            return key
    raise InvalidInput(f"no model {name!r} in the 29-model records (names as in the CSV header, _5shots optional)")


def load_arrays(records: str, cheap: str, expensive: str) -> Arrays:
    """``models`` (held-out split of the 29-model records) or ``qwen3`` (the 205 records, direct/reasoning)."""
    if records == "qwen3":
        arms = {"direct": "nothink_correct", "reasoning": "think_correct"}
        if cheap not in arms or expensive not in arms:
            raise InvalidInput(f"qwen3 records have arms direct and reasoning, got {cheap!r}, {expensive!r}")
        rows = list(read_jsonl(QWEN3_THINK))
        return Arrays(
            "qwen3",
            cheap,
            expensive,
            [format_mcq_prompt(str(r["question"]), [str(o) for o in r["options"]]) for r in rows],
            np.array([float(r[arms[cheap]]) for r in rows]),
            np.array([float(r[arms[expensive]]) for r in rows]),
            "the 205 Qwen3-30B-A3B MMLU-Pro computer-science records (never trained on)",
        )
    if records != "models":
        raise InvalidInput(f"--records must be 'models' or 'qwen3', got {records!r}")
    from workers.evaluation.heldout import heldout_items

    correct: dict[int, tuple[float, float]] = {}
    cols: tuple[str, str] | None = None
    for row in read_csv(MODEL_CORRECTNESS):
        if cols is None:
            cols = (_column(row, cheap), _column(row, expensive))
        a, b = row.get(cols[0], ""), row.get(cols[1], "")
        if a != "" and b != "":
            correct[int(row["question_id"])] = (float(a), float(b))
    items = [it for it in heldout_items(SPLIT_SEED) if any(q in correct for q in it.question_ids)]
    pairs = [correct[next(q for q in it.question_ids if q in correct)] for it in items]
    return Arrays(
        "models",
        cheap,
        expensive,
        [format_mcq_prompt(it.question, list(it.options)) for it in items],
        np.array([p[0] for p in pairs]),
        np.array([p[1] for p in pairs]),
        "MMLU-Pro questions of the classifier's held-out split (29-model records)",
    )


def _routed(priority: F, cheap: F, expensive: F, share: float) -> F:
    return np.asarray(np.where(top_share(priority, share), expensive, cheap), dtype=np.float64)


def _summary(vectors: dict[str, F | None], rng: np.random.Generator) -> dict[str, Any]:
    """Mean and paired bootstrap 95% interval of each routed-correctness vector (None: no model yet)."""
    present = {k: v for k, v in vectors.items() if v is not None}
    n = len(next(iter(present.values())))
    idx = rng.integers(0, n, (BOOTSTRAP, n)) if n else np.zeros((BOOTSTRAP, 0), dtype=np.int64)
    out: dict[str, Any] = {"n": n}
    for k, v in vectors.items():
        if v is None or n == 0:
            out[k] = None
            continue
        boots = v[idx].mean(axis=1)
        out[k] = {"accuracy": round(float(v.mean()), 4), "ci95": _pct(boots)}
    if vectors.get("new") is not None and n:
        d = vectors["new"] - vectors["shipped"]  # type: ignore[operator]
        out["new_minus_shipped"] = {"value": round(float(d.mean()), 4), "ci95": _pct(d[idx].mean(axis=1))}
    else:
        out["new_minus_shipped"] = None
    return out


def _pct(boots: F) -> list[float]:
    return [round(float(np.quantile(boots, 0.025)), 4), round(float(np.quantile(boots, 0.975)), 4)]


def _run(
    data: Arrays, x: F, shipped: F, keys: list[str], jobs: list[I], rate: float, share: float, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, round(rate * 10_000)])
    boot = np.random.default_rng([seed, round(rate * 10_000), 1])
    y = data.expensive - data.cheap
    pool: list[int] = []
    rows: list[dict[str, Any]] = []
    pooled: dict[str, list[F]] = {k: [] for k in POLICIES}
    for j, job in enumerate(jobs):
        job_idx = job
        explored = rng.choice(job_idx, size=round(rate * len(job_idx)), replace=False)
        scored = np.setdiff1d(job_idx, explored)
        c, e = data.cheap[scored], data.expensive[scored]
        new: F | None = None
        lam: float | None = None
        if len(pool) >= MIN_TRAIN:
            model = fit_cv(x[pool], y[pool], [keys[i] for i in pool], seed)
            new, lam = _routed(model.predict(x[scored]), c, e, share), model.lam
        k = round(min(max(share, 0.0), 1.0) * len(scored)) / max(len(scored), 1)
        vectors: dict[str, F | None] = {
            "new": new,
            "shipped": _routed(shipped[scored], c, e, share),
            "random": (1 - k) * c + k * e,
            "oracle": _routed(y[scored], c, e, share),
        }
        rows.append({"job": j + 1, "trained_on": len(pool), "lambda": lam, **_summary(vectors, boot)})
        if new is not None:
            for name in POLICIES:
                pooled[name].append(vectors[name])  # type: ignore[arg-type]
        pool.extend(int(i) for i in explored)
    pooled_summary = _summary({k: np.concatenate(v) for k, v in pooled.items()}, boot) if pooled["new"] else None
    return {"explore": rate, "explored_total": len(pool), "jobs": rows, "pooled": pooled_summary}


def simulate(
    data: Arrays,
    classifier: Labeller,
    rates: Sequence[float],
    jobs: int = 8,
    share: float = 0.3,
    seed: int = 13,
    features: FeatureSet = "embedding-v1",
) -> dict[str, Any]:
    if len(data.texts) < jobs:
        raise InvalidInput(f"{len(data.texts)} questions cannot be cut into {jobs} jobs")
    classes = classifier.classify(data.texts)
    x = np.array([feature_vector(c, classifier.labels, features) for c in classes], dtype=np.float64)
    shipped = np.array([c.reasoning_score or 0.0 for c in classes], dtype=np.float64)
    keys = [normalise(t) for t in data.texts]
    order = np.random.default_rng(seed).permutation(len(data.texts))
    cut = [np.asarray(part, dtype=np.int64) for part in np.array_split(order, jobs)]
    return {
        "records": data.source,
        "questions": data.questions,
        "cheap": data.cheap_name,
        "expensive": data.expensive_name,
        "n": len(data.texts),
        "jobs": jobs,
        "share": share,
        "seed": seed,
        "features": features,
        "always_cheap": round(float(data.cheap.mean()), 4),
        "always_expensive": round(float(data.expensive.mean()), 4),
        "runs": [_run(data, x, shipped, keys, cut, r, share, seed) for r in rates],
    }


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "-"
    return f"{m['accuracy']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"


def learning_table(result: dict[str, Any]) -> str:
    """Markdown: one table per exploration rate, a row per job, and the pooled row."""
    lines = [
        f"{result['records']}: {result['cheap']} -> {result['expensive']}, {result['n']} questions "
        f"({result['questions']}), {result['jobs']} jobs, share {result['share']:.0%} to the expensive arm, "
        f"features {result['features']}, seed {result['seed']}; always cheap {result['always_cheap']:.3f}, "
        f"always expensive {result['always_expensive']:.3f}. Accuracy on never-explored questions, "
        "bootstrap 95% intervals.",
    ]
    for run in result["runs"]:
        lines += [
            "",
            f"explore {run['explore']:.0%} ({run['explored_total']} explored in all)",
            "",
            "| job | trained on | n | new model | shipped score | random | oracle | new - shipped |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in [*run["jobs"], *([{"job": "pooled", "trained_on": "", **run["pooled"]}] if run["pooled"] else [])]:
            d = row["new_minus_shipped"]
            diff = "-" if d is None else f"{d['value']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            cells = " | ".join(_cell(row[k]) for k in POLICIES)
            lines.append(f"| {row['job']} | {row['trained_on']} | {row['n']} | {cells} | {diff} |")
    return "\n".join(lines)
