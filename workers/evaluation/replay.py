"""Replay evaluation of the reasoning policy on recorded thinking on/off outcomes (Qwen3 file format).

For each record the question is written as the pipeline writes it (``format_mcq_prompt``), classified
and decided by the real classifier and policy, and the recorded correctness and tokens of the chosen
mode are looked up. Policies side by side: ``router``, ``always`` (thinking on, full effort), ``never``
and ``oracle`` (per question the cheapest mode that is correct, else thinking off).
"""

from __future__ import annotations

import json
import lzma
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.messages import RouteDecision
from workers.classifier.model import Classifier
from workers.classifier.splits import normalise, unit_hash
from workers.data import QWEN3_THINK, read_jsonl
from workers.data.prompts import format_mcq_prompt
from workers.router.policy import Policy

SHIPPED_QWEN3 = "qwen3"
SPLIT_SALT = "replay-split"
CALIBRATION_FRACTION = 0.5
SPLITS = ("all", "calibration", "report")
# think_* field prefix per reasoning effort (None and "high" are full thinking)
EFFORT_FIELDS = {None: "think", "high": "think", "medium": "think_bias_19", "low": "think_bias_19_5"}
# modelled latency (the replay server's default assumptions): prefill per 1k prompt tokens, decode rate
PREFILL_S_PER_1K = 0.05
DECODE_TOK_PER_S = 60.0
PROMPT_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Outcome:
    correct: bool
    tokens: float


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a Qwen3-format file (.jsonl or .jsonl.xz); ``qwen3`` names the shipped one."""
    if str(path) == SHIPPED_QWEN3:
        return list(read_jsonl(QWEN3_THINK))
    p = Path(path)
    opener: Any = lzma.open if p.suffix == ".xz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def split_of(record: Mapping[str, Any], seed: int = 13) -> str:
    """``calibration`` or ``report`` by a hash of the normalised question (fixed, half each)."""
    key = normalise(str(record["question"]))
    return "calibration" if unit_hash(seed, SPLIT_SALT, key) < CALIBRATION_FRACTION else "report"


def select(records: Sequence[Mapping[str, Any]], split: str) -> list[Mapping[str, Any]]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [r for r in records if split == "all" or split_of(r) == split]


def record_text(record: Mapping[str, Any]) -> str:
    options = record.get("options") or record.get("choices") or []
    return format_mcq_prompt(str(record["question"]), [str(o) for o in options])


def outcome(record: Mapping[str, Any], reasoning: bool, effort: str | None = None) -> Outcome:
    """Recorded correctness and tokens of one mode (a missing shortened-thinking run: full thinking)."""
    prefix = EFFORT_FIELDS.get(effort, "think") if reasoning else "nothink"
    if f"{prefix}_correct" not in record:
        prefix = "think"
    return Outcome(bool(record[f"{prefix}_correct"]), float(record[f"{prefix}_n_tokens"]))


def oracle(record: Mapping[str, Any]) -> tuple[bool, Outcome]:
    off, on = outcome(record, False), outcome(record, True)
    candidates = [(o.tokens, use, o) for use, o in ((False, off), (True, on)) if o.correct]
    if not candidates:
        return False, off
    _, use, best = min(candidates, key=lambda t: (t[0], t[1]))
    return use, best


def route(
    classifier: Classifier, policy: Policy, texts: Sequence[str], default_model: str = "Qwen/Qwen3-30B-A3B"
) -> list[RouteDecision]:
    """The router's decisions for texts: ``Classifier.classify`` then ``Policy.decide``, as the worker does."""
    return [policy.decide(c, None, default_model, classifier.version) for c in classifier.classify(texts)]


def _latency_s(prompt_chars: int, tokens: float) -> float:
    prompt_tokens = prompt_chars / PROMPT_CHARS_PER_TOKEN
    return PREFILL_S_PER_1K * prompt_tokens / 1000 + tokens / DECODE_TOK_PER_S


def _summary(rows: Sequence[tuple[bool, Outcome, int]]) -> dict[str, Any]:
    n = len(rows)
    if n == 0:
        return {"n": 0}
    total = sum(o.tokens for _, o, _ in rows)
    return {
        "n": n,
        "accuracy": round(sum(o.correct for _, o, _ in rows) / n, 4),
        "mean_tokens": round(total / n, 1),
        "total_tokens": round(total),
        "mean_latency_s": round(sum(_latency_s(c, o.tokens) for _, o, c in rows) / n, 2),
        "reasoning_share": round(sum(u for u, _, _ in rows) / n, 4),
    }


def evaluate_replay(records: Sequence[Mapping[str, Any]], classifier: Classifier, policy: Policy) -> dict[str, Any]:
    """Side-by-side metrics of router / always / never / oracle, overall and per (recorded) category."""
    texts = [record_text(r) for r in records]
    decisions = route(classifier, policy, texts)
    rows: dict[str, list[tuple[bool, Outcome, int]]] = {p: [] for p in ("router", "always", "never", "oracle")}
    cats: list[str] = []
    for rec, dec, text in zip(records, decisions, texts, strict=True):
        chars = len(text)
        rows["router"].append((dec.use_reasoning, outcome(rec, dec.use_reasoning, dec.reasoning_effort), chars))
        rows["always"].append((True, outcome(rec, True), chars))
        rows["never"].append((False, outcome(rec, False), chars))
        use, best = oracle(rec)
        rows["oracle"].append((use, best, chars))
        cats.append(str(rec.get("category", "unknown")))
    per_category: dict[str, Any] = {}
    for cat in sorted(set(cats)):
        idx = [i for i, c in enumerate(cats) if c == cat]
        per_category[cat] = {p: _summary([r[i] for i in idx]) for p, r in rows.items()}
    predicted: dict[str, int] = {}
    for d in decisions:
        predicted[d.category] = predicted.get(d.category, 0) + 1
    return {
        "n": len(records),
        "policy_version": policy.version,
        "classifier_version": classifier.version,
        "policies": {p: _summary(r) for p, r in rows.items()},
        "per_category": per_category,
        "predicted_categories": dict(sorted(predicted.items(), key=lambda kv: -kv[1])),
        "latency_model": f"{PREFILL_S_PER_1K} s per 1k prompt tokens + completion tokens / {DECODE_TOK_PER_S} tok/s",
    }


def iter_scores(decisions: Sequence[RouteDecision]) -> Iterator[float]:
    for d in decisions:
        yield float("nan") if d.reasoning_score is None else d.reasoning_score
