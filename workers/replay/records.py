"""Recorded model outputs on MMLU-Pro, indexed for the replay server (`workers.replay.server`).

What a request gets, per (model, question, mode):

* ``Qwen/Qwen3-30B-A3B`` (alias ``Qwen3-30B-A3B``) on one of the 205 computer-science questions of
  ``mmlu_pro_cs_qwen3_think_vs_nothink.jsonl``: the real record, source ``record``. Thinking off →
  ``nothink_*``; thinking on → ``think_*``; with a reasoning effort: ``high`` → ``think_*``,
  ``medium`` → ``think_bias_19_*``, ``low`` → ``think_bias_19_5_*`` (the shortened-thinking runs; their
  mean lengths on the 205 are 1313, 1025 and 679 tokens, accuracies 0.829, 0.829 and 0.785). The
  shortened runs store correctness but no letter: a correct one answers the gold letter, a wrong one the
  letter of a wrong full-thinking or no-thinking answer to the same question, else no letter (7 of the
  205 at ``low``, 1 at ``medium``), so replayed accuracy equals the recorded one. Eight thinking records
  stopped at the recording budget (4,000 or 8,000 tokens, thinking never closed); they replay as recorded
  (letter and length) with finish reason ``stop`` unless the request's own ``max_tokens`` cuts them.
* One of the 29 models of ``mmlu_pro_test_model_correctness.csv`` (name = column prefix such as
  ``gemini-1.5-pro-002_5shots``, or without ``_5shots``): its recorded letter, and ``out_chars / 4``
  (rounded up) completion tokens — 4 characters per token is modelled, not measured. These are 5-shot
  chain-of-thought runs without a separate thinking phase, so thinking on/off does not change the reply
  (no ``reasoning_content``). Source ``record``.
* Qwen3 on any other MMLU-Pro question: a proxy, source ``proxy:<model>``. No model of the 29 is as
  accurate as Qwen3 on the 205 overlap questions (Qwen3: 0.829 thinking, 0.790 not); the two closest are
  ``DeepSeek-Coder-V2_5shots`` (0.688) and ``gemini-1.5-pro-002_5shots`` (0.678). Of the two ways to
  assign them, DeepSeek for thinking and Gemini for no thinking has the smaller squared accuracy gap
  (29² + 23² vs 31² + 21², in questions) and keeps the order (the more accurate model stands in for the
  more accurate mode); Gemini also agrees best with Qwen3's no-thinking correctness (0.810). DeepSeek has
  no record for 1,681 questions: the proxy then falls back to the other one, then to
  ``Meta-Llama-3_1-70B-Instruct_5shots`` (0.668 on the overlap, records for every question). Token counts
  are scaled per (proxy, mode) so that the proxy's mean on the overlap equals Qwen3's mean for that mode;
  the factors are computed at load time and reported by `ReplayData.describe`.
* Text that contains no known question (or a question the model has no record for): a deterministic
  synthetic answer (from a SHA-256 of the prompt), content starting with `SYNTHETIC_PREFIX`, length 0.5-1.5
  times the model's mean for that mode. Source ``synthetic``.

Recorded chains of thought are not stored: ``reasoning_content`` is a placeholder giving their length;
``content`` is ``"The answer is (X)."``. Reasoning tokens = recorded tokens - `ANSWER_TOKENS`; completion
tokens include them. Prompt tokens are modelled: ceil(len(message text) / 4) + 8 per message.
"""

from __future__ import annotations

import json
import logging
import lzma
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from workers import data
from workers.replay.answer import (
    CHARS_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    NO_LETTER,
    Mode,
    Recorded,
    ReplayAnswer,
    count_prompt_tokens,
    prompt_text,
    reply,
    synthetic,
)
from workers.replay.index import MmluRecord, QuestionIndex

logger = logging.getLogger(__name__)

__all__ = ["MmluRecord", "Mode", "ReplayAnswer", "ReplayData", "load_default"]

QWEN3_MODEL = "Qwen/Qwen3-30B-A3B"
QWEN3_ALIASES = frozenset({QWEN3_MODEL, "Qwen3-30B-A3B"})
PROXY_THINK = "DeepSeek-Coder-V2_5shots"
PROXY_NOTHINK = "gemini-1.5-pro-002_5shots"
PROXY_FALLBACK = "Meta-Llama-3_1-70B-Instruct_5shots"
MODEL_SUFFIX = "_5shots"
# Qwen3 mode key -> field prefix in the think/nothink file ("think:high" uses "think").
QWEN3_FIELDS = {
    "nothink": "nothink",
    "think": "think",
    "think:medium": "think_bias_19",
    "think:low": "think_bias_19_5",
}


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _bias_recorded(row: Mapping[str, Any], prefix: str) -> Recorded:
    """A shortened-thinking run stores correctness only: infer the letter where the record allows."""
    tokens = float(row.get(f"{prefix}_n_tokens", row["think_n_tokens"]))
    correct = row.get(f"{prefix}_correct")
    if correct is None:  # a file without this run: use full thinking
        return Recorded(row.get("think_pred"), tokens, bool(row.get("think_correct")))
    if correct:
        return Recorded(str(row["answer"]), tokens, True)
    for pred in (row.get("think_pred"), row.get("nothink_pred")):
        if pred and pred != row["answer"]:
            return Recorded(str(pred), tokens, False)
    return Recorded(None, tokens, False, NO_LETTER)


def _qwen3_recorded(row: Mapping[str, Any]) -> dict[str, Recorded]:
    out: dict[str, Recorded] = {}
    for key in ("nothink", "think"):
        pred = row.get(f"{key}_pred")
        correct = row.get(f"{key}_correct")
        flag = bool(correct) if correct is not None else pred == row["answer"]
        out[key] = Recorded(pred or None, float(row[f"{key}_n_tokens"]), flag)
    for key in ("think:medium", "think:low"):
        out[key] = _bias_recorded(row, QWEN3_FIELDS[key])
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


class ReplayData:
    """All recorded outputs, indexed. Build with `ReplayData.load` (1-3 s)."""

    def __init__(
        self,
        questions: Mapping[int, MmluRecord],
        qwen3: Mapping[int, dict[str, Recorded]],
        models: Mapping[str, dict[int, Recorded]],
    ) -> None:
        self.questions = dict(questions)
        self.qwen3 = dict(qwen3)
        self.models = dict(models)
        self.index = QuestionIndex(self.questions.values(), preferred=self.qwen3)
        self._aliases = {name: name for name in self.models}
        self._aliases.update({n.removesuffix(MODEL_SUFFIX): n for n in self.models})
        self._aliases.update(dict.fromkeys(QWEN3_ALIASES, QWEN3_MODEL))
        self.qwen3_mean = {k: _mean([r[k].tokens for r in self.qwen3.values()]) for k in QWEN3_FIELDS}
        self.model_mean = {m: _mean([r.tokens for r in recs.values()]) for m, recs in self.models.items()}
        self.scale = {m: self._scales(m) for m in (PROXY_THINK, PROXY_NOTHINK, PROXY_FALLBACK) if m in models}
        self.load_s = 0.0

    @classmethod
    def load(cls, qwen3_records: Path | None = None) -> ReplayData:
        """Read the shipped data (and `qwen3_records`, a file in the Qwen3 think/nothink format)."""
        start = time.perf_counter()
        questions = {
            int(r["question_id"]): MmluRecord(
                int(r["question_id"]),
                r["question"],
                tuple(r["options"]),
                r["answer"],
                r["category"],
                r["src"],
            )
            for r in data.read_jsonl(data.MMLU_PRO_TEST)
        }
        rows = list(data.read_jsonl(data.QWEN3_THINK) if qwen3_records is None else _read_jsonl(qwen3_records))
        qwen3: dict[int, dict[str, Recorded]] = {}
        for row in rows:
            qid = int(row["question_id"])
            if qid not in questions:
                questions[qid] = MmluRecord(
                    qid,
                    row["question"],
                    tuple(row["options"]),
                    row["answer"],
                    row.get("category", "unknown"),
                    row.get("src", "unknown"),
                )
            qwen3[qid] = _qwen3_recorded(row)
        replay = cls(questions, qwen3, _load_models())
        replay.load_s = time.perf_counter() - start
        logger.info(
            "replay data: %d questions, %d Qwen3 records, %d models, loaded in %.2f s",
            len(questions),
            len(qwen3),
            len(replay.models),
            replay.load_s,
        )
        return replay

    def served_models(self) -> list[str]:
        return [QWEN3_MODEL, *self.models]

    def resolve_model(self, name: str) -> str | None:
        """The canonical model name for `name`, or None when no such model is served."""
        return self._aliases.get(name)

    def find(self, text: str) -> MmluRecord | None:
        return self.index.find(text)

    def answer(self, model: str, messages: Sequence[Mapping[str, Any]], mode: Mode) -> ReplayAnswer:
        """What `model` answered to this conversation (its last user message) in `mode`."""
        canonical = self.resolve_model(model)
        if canonical is None:
            raise KeyError(model)
        prompt_tokens = count_prompt_tokens(messages)
        text = prompt_text(messages)
        rec = self.find(text)
        qid = None if rec is None else rec.question_id
        if canonical == QWEN3_MODEL:
            if qid is not None and qid in self.qwen3:
                return reply(self.qwen3[qid][mode.qwen3_key], mode.thinking, prompt_tokens, "record", qid)
            proxied = self._proxy(qid, mode) if qid is not None else None
            if proxied is not None:
                return reply(proxied[0], mode.thinking, prompt_tokens, f"proxy:{proxied[1]}", qid)
            return synthetic(text, self.qwen3_mean[mode.qwen3_key], mode.thinking, prompt_tokens)
        own = self.models[canonical].get(qid) if qid is not None else None
        if own is not None:
            return reply(own, False, prompt_tokens, "record", qid)
        return synthetic(text, self.model_mean[canonical], False, prompt_tokens)

    def _proxy(self, qid: int, mode: Mode) -> tuple[Recorded, str] | None:
        first, second = (PROXY_THINK, PROXY_NOTHINK) if mode.thinking else (PROXY_NOTHINK, PROXY_THINK)
        for proxy in (first, second, PROXY_FALLBACK):
            recorded = self.models.get(proxy, {}).get(qid)
            if recorded is not None:
                tokens = max(1.0, recorded.tokens * self.scale[proxy][mode.qwen3_key])
                return replace(recorded, tokens=tokens), proxy
        return None

    def _scales(self, proxy: str) -> dict[str, float]:
        """Per Qwen3 mode: Qwen3's mean tokens / the proxy's mean tokens, on the questions both answered."""
        overlap = [q for q in self.qwen3 if q in self.models[proxy]]
        proxy_mean = _mean([self.models[proxy][q].tokens for q in overlap])
        if not overlap or proxy_mean <= 0:
            logger.warning("no overlap between the Qwen3 records and %s: token scale 1.0", proxy)
            return dict.fromkeys(QWEN3_FIELDS, 1.0)
        return {k: _mean([self.qwen3[q][k].tokens for q in overlap]) / proxy_mean for k in QWEN3_FIELDS}

    def overlap_accuracy(self, model: str) -> float | None:
        """Accuracy of `model` (or Qwen3 mode key "think"/"nothink"/...) on the recorded Qwen3 questions."""
        if model in QWEN3_FIELDS:
            flags = [r[model].correct for r in self.qwen3.values()]
        else:
            flags = [self.models[model][q].correct for q in self.qwen3 if q in self.models[model]]
        known = [bool(f) for f in flags if f is not None]
        return round(sum(known) / len(known), 4) if known else None

    def describe(self) -> dict[str, Any]:
        """Sizes, the proxy choice with its accuracies and token scale factors, and the modelling rules."""
        return {
            "questions": len(self.questions),
            "qwen3_records": len(self.qwen3),
            "models": len(self.models),
            "qwen3_overlap_accuracy": {k: self.overlap_accuracy(k) for k in QWEN3_FIELDS},
            "qwen3_mean_tokens": {k: round(v, 1) for k, v in self.qwen3_mean.items()},
            "proxy": {"think": PROXY_THINK, "nothink": PROXY_NOTHINK, "fallback": PROXY_FALLBACK},
            "proxy_overlap_accuracy": {m: self.overlap_accuracy(m) for m in self.scale},
            "proxy_scale_factors": {m: {k: round(v, 3) for k, v in s.items()} for m, s in self.scale.items()},
            "model_overlap_accuracy": {m: self.overlap_accuracy(m) for m in self.models},
            "tokens": f"modelled: {CHARS_PER_TOKEN} chars per token; prompt = ceil(chars/4) + "
            f"{MESSAGE_OVERHEAD_TOKENS} per message",
            "load_s": round(self.load_s, 3),
        }


def _load_models() -> dict[str, dict[int, Recorded]]:
    preds = {int(r["question_id"]): r for r in data.read_csv(data.MODEL_PREDS)}
    models: dict[str, dict[int, Recorded]] = {}
    for row in data.read_csv(data.MODEL_CORRECTNESS):
        qid = int(row["question_id"])
        for key, flag in row.items():
            if not key.endswith("__correct"):
                continue
            name = key.removesuffix("__correct")
            recs = models.setdefault(name, {})
            chars = row.get(f"{name}__out_chars", "")
            if flag == "" or chars == "":
                continue
            letter = preds.get(qid, {}).get(f"{name}__pred") or None
            recs[qid] = Recorded(letter, float(chars) / CHARS_PER_TOKEN, flag == "1")
    return models


def load_default() -> ReplayData:
    """The shipped data, loaded once per process."""
    return ReplayData.load()
