"""Routing vs cascading on held-out replay records: accuracy against tokens and modelled latency.

Two datasets, one cheap and one expensive answer per question:

* ``qwen3``: Qwen3-30B-A3B on the 205 MMLU-Pro CS records, cheap = thinking off, expensive = thinking on;
  tokens are the recorded completion tokens; the route key is the question's source (``src``: 14 subjects).
* ``mmlu29``: two of the 29 recorded models on all MMLU-Pro questions both answered, cheap = ``--cheap``,
  expensive = ``--expensive``; tokens are MODELLED as output characters / 4; the route key is the category;
  ``cost`` weighs an expensive token by the parameter ratio (70B / 8B = 8.75 for the default pair).

Split: a question is held out when sha256(question_id) is odd; the other half only ranks route keys.
Escalation signal: the MODELLED confidence the replay server returns as the answer letter's logprob,
p = (agreeing models + 1) / (models + 2) over the recorded models other than the cheap and expensive one
(`workers.replay.logprobs`); no letter -> 0. It is optimistic: 27-29 other models' answers stand in for
a calibrated log-probability. Strategies (points of each curve):

* always-cheap, always-expensive; oracle: expensive only where cheap is wrong (paying one answer);
* route-only(k): the k route keys with the best train-half accuracy gain per extra token go expensive;
* cascade(t): cheap first, expensive too when confidence < t (paying both answers);
* route+cascade(t): the best third of the keys by train gain per cost go expensive, the rest cascade(t).

Latency is modelled as output tokens / 60 tokens/s, attempts in sequence (the replay server's decode rate).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from workers.replay.logprobs import letter_probability
from workers.replay.records import QWEN3_MODEL, ReplayData

DECODE_TOK_PER_S = 60.0
ROUTE_SHARE = 3  # route+cascade routes the best third of the route keys (by train gain per cost)
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_CHEAP = "Meta-Llama-3_1-8B-Instruct_5shots"
DEFAULT_EXPENSIVE = "Meta-Llama-3_1-70B-Instruct_5shots"
PARAMS_B = {DEFAULT_CHEAP: 8.0, DEFAULT_EXPENSIVE: 70.0}  # cost weight: parameters (billions) per token


@dataclass(frozen=True, slots=True)
class Item:
    key: str  # route key: subject (qwen3) or category (mmlu29)
    cheap_ok: bool
    exp_ok: bool
    cheap_tok: float
    exp_tok: float
    conf: float  # modelled confidence in the cheap answer


@dataclass(frozen=True, slots=True)
class Point:
    dataset: str
    strategy: str
    param: str
    accuracy: float
    mean_tokens: float
    cost: float  # tokens weighted by the expensive/cheap parameter ratio (cheap-token equivalents)
    latency_s: float
    escalated: float  # share of questions that paid a second (expensive) answer or went expensive

    def row(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "strategy": self.strategy,
            "param": self.param,
            "accuracy": round(self.accuracy, 4),
            "mean_tokens": round(self.mean_tokens, 1),
            "cost": round(self.cost, 1),
            "latency_s": round(self.latency_s, 2),
            "expensive_share": round(self.escalated, 4),
        }


def held_out(qid: int) -> bool:
    return hashlib.sha256(str(qid).encode()).digest()[-1] % 2 == 1


def qwen3_items(data: ReplayData) -> dict[int, Item]:
    out = {}
    for qid, r in data.qwen3.items():
        cheap, exp = r["nothink"], r["think"]
        conf = 0.0 if cheap.letter is None else letter_probability(data.models, qid, cheap.letter, QWEN3_MODEL)
        key = data.questions[qid].src
        out[qid] = Item(key, bool(cheap.correct), bool(exp.correct), cheap.tokens, exp.tokens, conf)
    return out


def model_items(data: ReplayData, cheap_model: str, exp_model: str) -> dict[int, Item]:
    pool = {m: recs for m, recs in data.models.items() if m not in (cheap_model, exp_model)}
    out = {}
    for qid, cheap in data.models[cheap_model].items():
        exp = data.models[exp_model].get(qid)
        if exp is None:
            continue
        conf = 0.0 if cheap.letter is None else letter_probability(pool, qid, cheap.letter, cheap_model)
        key = data.questions[qid].category
        out[qid] = Item(key, bool(cheap.correct), bool(exp.correct), cheap.tokens, exp.tokens, conf)
    return out


def _point(dataset: str, strategy: str, param: str, picks: Sequence[tuple[Item, str]], w: float) -> Point:
    """``picks``: per question "cheap", "expensive" (routed) or "cascade" (cheap, then expensive)."""
    n = len(picks)
    ok = tok = cost = escalated = 0.0
    for it, how in picks:
        if how == "cheap":
            ok += it.cheap_ok
            tok += it.cheap_tok
            cost += it.cheap_tok
        elif how == "expensive":
            ok += it.exp_ok
            tok += it.exp_tok
            cost += w * it.exp_tok
            escalated += 1
        else:
            ok += it.exp_ok
            tok += it.cheap_tok + it.exp_tok
            cost += it.cheap_tok + w * it.exp_tok
            escalated += 1
    return Point(dataset, strategy, param, ok / n, tok / n, cost / n, tok / n / DECODE_TOK_PER_S, escalated / n)


def rank_keys(train: Iterable[Item], w: float = 1.0) -> list[tuple[str, float, float]]:
    """Route keys by train accuracy gain per extra token (best first): (key, gain, gain per 1k tokens)."""
    by: dict[str, list[Item]] = defaultdict(list)
    for it in train:
        by[it.key].append(it)
    ranked = []
    for key, items in by.items():
        gain = sum(i.exp_ok - i.cheap_ok for i in items) / len(items)
        extra = max(sum(w * i.exp_tok - i.cheap_tok for i in items) / len(items), 1.0)
        ranked.append((key, gain, 1000 * gain / extra))
    return sorted(ranked, key=lambda r: -r[2])


def evaluate(
    dataset: str, items: dict[int, Item], thresholds: Sequence[float] = THRESHOLDS, w: float = 1.0
) -> list[Point]:
    """Every strategy's points on the held-out half; ``w``: cost of an expensive token in cheap tokens."""
    test = [it for q, it in items.items() if held_out(q)]
    ranked = rank_keys((it for q, it in items.items() if not held_out(q)), w)
    pts = [
        _point(dataset, "always-cheap", "", [(i, "cheap") for i in test], w),
        _point(dataset, "always-expensive", "", [(i, "expensive") for i in test], w),
        _point(dataset, "oracle", "", [(i, "cheap" if i.cheap_ok else "expensive") for i in test], w),
    ]
    for k in range(1, len(ranked)):
        chosen = {key for key, _, _ in ranked[:k]}
        picks = [(i, "expensive" if i.key in chosen else "cheap") for i in test]
        pts.append(_point(dataset, "route-only", f"top {k} keys", picks, w))
    routed = {key for key, gain, _ in ranked[: max(1, len(ranked) // ROUTE_SHARE)] if gain > 0}
    for t in thresholds:
        picks = [(i, "cascade" if i.conf < t else "cheap") for i in test]
        pts.append(_point(dataset, "cascade", f"t={t:g}", picks, w))
        picks = [(i, "expensive" if i.key in routed else ("cascade" if i.conf < t else "cheap")) for i in test]
        pts.append(_point(dataset, "route+cascade", f"t={t:g}, {len(routed)} keys routed", picks, w))
    return pts


def run(
    data: ReplayData, cheap: str, expensive: str, thresholds: Sequence[float] = THRESHOLDS, weight: float | None = None
) -> list[Point]:
    """Both datasets; ``weight`` (expensive token cost in cheap tokens) defaults to the parameter ratio."""
    w = weight if weight is not None else PARAMS_B.get(expensive, 1.0) / PARAMS_B.get(cheap, 1.0)
    name = f"mmlu29 {cheap.removesuffix('_5shots')} -> {expensive.removesuffix('_5shots')}"
    return evaluate("qwen3", qwen3_items(data), thresholds) + evaluate(
        name, model_items(data, cheap, expensive), thresholds, w
    )


def best_at_budget(points: Sequence[Point], budget: float) -> dict[str, Point]:
    """Per strategy, the most accurate point whose mean cost stays within ``budget``."""
    out: dict[str, Point] = {}
    for p in points:
        if p.cost <= budget and (p.strategy not in out or p.accuracy > out[p.strategy].accuracy):
            out[p.strategy] = p
    return out
