"""Converters to outcome records (`schemas.outcomes.OutcomeRecord`): ``thinkroute records convert --from KIND``.

* ``qwen3``: the Qwen3-30B-A3B think/no-think file (``qwen3``: the shipped 205 MMLU-Pro computer-science
  records; else a path in the same format). One record per question: ``id`` = question_id, ``category``,
  ``answer``, ``question`` and ``options``; arms (the mapping the replay server uses, `workers.replay.records`):

  ==================== ========================== ===========================================
  arm                  fields                     what was recorded
  ==================== ========================== ===========================================
  ``direct``           ``nothink_*``              thinking off
  ``reasoning``        ``think_*``                thinking on, full budget
  ``reasoning:high``   ``think_*``                the same run as ``reasoning``
  ``reasoning:medium`` ``think_bias_19_*``        shortened thinking (a logit bias towards
                                                  closing the thinking block)
  ``reasoning:low``    ``think_bias_19_5_*``      shortened harder
  ==================== ========================== ===========================================

  ``tokens`` = the recorded ``*_n_tokens`` (completion tokens, thinking included). A record without a
  shortened run has no ``reasoning:medium``/``reasoning:low`` arm (the replay server would fall back to
  full thinking; an evaluation should not pretend it was recorded).
* ``models``: the 29-model MMLU-Pro correctness CSV (``models``: the shipped one, 12,032 questions; else a
  path with the same ``<model>__correct`` / ``<model>__out_chars`` columns). One arm per model, named
  without ``_5shots``; ``tokens`` = ceil(out_chars / 4): MODELLED (4 characters per token), not measured.
  The question, options, category and answer come from the shipped MMLU-Pro test set, joined by
  question_id. ``models`` keeps only the named arms.
* ``routellm``: a CSV with a prompt column and one ``<model>_correct`` column per model (0/1 or a float in
  [0, 1]; empty: no outcome), optional ``<model>_tokens``; ``id`` from an ``id`` column, else the row number.
* ``exploration``: what ``thinkroute records export JOB`` writes (outcome records already): validated,
  several files merged, a record whose ``id`` was seen before dropped (the first one kept).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.outcomes import ArmOutcome, OutcomeRecord
from workers.data import MMLU_PRO_TEST, MODEL_CORRECTNESS, read_csv, read_jsonl
from workers.errors import InvalidInput
from workers.evaluation.outcomes import read_outcomes
from workers.evaluation.replay import read_records

KINDS = ("qwen3", "models", "routellm", "exploration")
QWEN3_ARMS = {
    "direct": "nothink",
    "reasoning": "think",
    "reasoning:high": "think",
    "reasoning:medium": "think_bias_19",
    "reasoning:low": "think_bias_19_5",
}
QWEN3_SOURCE = "qwen3-30b-a3b:mmlu-pro-cs"
MODELS_SOURCE = "mmlu-pro-29-models"
SHIPPED_MODELS = "models"
CHARS_PER_TOKEN = 4
SHOTS_SUFFIX = "_5shots"


@dataclass
class Converted:
    records: list[OutcomeRecord]
    stats: dict[str, Any] = field(default_factory=dict)


def _qwen3_arm(row: dict[str, Any], prefix: str) -> ArmOutcome | None:
    if f"{prefix}_correct" not in row:
        return None
    tokens = row.get(f"{prefix}_n_tokens")
    return ArmOutcome(correct=float(row[f"{prefix}_correct"]), tokens=None if tokens is None else int(tokens))


def from_qwen3(source: str) -> Converted:
    try:
        rows = read_records(source)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read Qwen3 records {source}: {exc}") from None
    out = []
    for n, row in enumerate(rows, 1):
        try:
            arms = {a: o for a, prefix in QWEN3_ARMS.items() if (o := _qwen3_arm(row, prefix)) is not None}
            out.append(
                OutcomeRecord(
                    id=str(row["question_id"]),
                    question=str(row["question"]),
                    options=[str(o) for o in row.get("options") or []],
                    category=row.get("category"),
                    answer=row.get("answer"),
                    source=QWEN3_SOURCE,
                    outcomes=arms,
                    meta={"src": row["src"]} if "src" in row else None,
                )
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput(f"{source}:{n}: not a Qwen3 record: {exc}") from None
    return Converted(out, {"records": len(out), "arms": list(QWEN3_ARMS)})


def _csv_rows(source: str | Path) -> Iterator[dict[str, str]]:
    if str(source) == SHIPPED_MODELS:
        yield from read_csv(MODEL_CORRECTNESS)
        return
    try:
        with Path(source).open(newline="", encoding="utf-8-sig") as f:
            yield from csv.DictReader(f)
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror or exc}") from None


def model_name(column_prefix: str) -> str:
    return column_prefix.removesuffix(SHOTS_SUFFIX)


def from_models(source: str, keep: Sequence[str] | None = None) -> Converted:
    rows = _csv_rows(source)
    first = next(rows, None)
    if first is None:
        raise InvalidInput(f"{source}: no rows")
    prefixes = [c.removesuffix("__correct") for c in first if c.endswith("__correct")]
    if not prefixes:
        raise InvalidInput(f"{source}: no <model>__correct column")
    if keep:
        names = {model_name(p): p for p in prefixes}
        unknown = [k for k in keep if model_name(k) not in names]
        if unknown:
            raise InvalidInput(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(names)}")
        prefixes = [names[model_name(k)] for k in keep]
    questions = {int(q["question_id"]): q for q in read_jsonl(MMLU_PRO_TEST)}
    out = []
    missing_question = no_outcome = 0
    for n, row in enumerate([first, *rows], 2):
        try:
            qid = int(row["question_id"])
            arms = {}
            for p in prefixes:
                c, chars = row.get(f"{p}__correct", ""), row.get(f"{p}__out_chars", "")
                if c == "":
                    continue
                tokens = math.ceil(float(chars) / CHARS_PER_TOKEN) if chars != "" else None
                arms[model_name(p)] = ArmOutcome(correct=float(c), tokens=tokens)
        except (KeyError, ValueError) as exc:
            raise InvalidInput(f"{source}:{n}: {exc}") from None
        q = questions.get(qid)
        if q is None:
            missing_question += 1
            continue
        if not arms:
            no_outcome += 1
            continue
        out.append(
            OutcomeRecord(
                id=str(qid),
                question=str(q["question"]),
                options=[str(o) for o in q["options"]],
                category=str(q["category"]),
                answer=str(q["answer"]),
                source=MODELS_SOURCE,
                outcomes=arms,
                meta={"src": q["src"], "tokens": "modelled: ceil(out_chars / 4)"},
            )
        )
    stats = {
        "records": len(out),
        "arms": [model_name(p) for p in prefixes],
        "skipped_no_question": missing_question,
        "skipped_no_outcome": no_outcome,
        "tokens": "modelled: ceil(out_chars / 4), not measured",
    }
    return Converted(out, stats)


def _unit(value: str, where: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise InvalidInput(f"{where}: {value!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise InvalidInput(f"{where}: correctness {v} is outside [0, 1]")
    return v


def _tokens(value: str, where: str) -> int:
    try:
        v = float(value)
    except ValueError:
        raise InvalidInput(f"{where}: tokens {value!r} is not a number") from None
    if v < 0 or not math.isfinite(v) or v != int(v):
        raise InvalidInput(f"{where}: tokens {value!r} is not a count")
    return int(v)


def from_routellm(source: str, prompt_column: str = "prompt") -> Converted:
    rows = _csv_rows(source)
    out = []
    models: list[str] = []
    skipped = 0
    for n, row in enumerate(rows, 2):
        if not models:
            if prompt_column not in row:
                raise InvalidInput(f"{source}: no column {prompt_column!r} (--prompt-column)")
            models = [c.removesuffix("_correct") for c in row if c.endswith("_correct")]
            if not models:
                raise InvalidInput(f"{source}: no <model>_correct column")
        where = f"{source}:{n}"
        arms = {}
        for m in models:
            if (c := (row.get(f"{m}_correct") or "").strip()) == "":
                continue
            t = (row.get(f"{m}_tokens") or "").strip()
            arms[m] = ArmOutcome(
                correct=_unit(c, f"{where} {m}_correct"), tokens=_tokens(t, f"{where} {m}_tokens") if t else None
            )
        prompt = row.get(prompt_column) or ""
        if not arms or not prompt.strip():
            skipped += 1
            continue
        rid = (row.get("id") or "").strip() or str(n - 1)
        out.append(OutcomeRecord(id=rid, prompt=prompt, source=f"routellm:{Path(source).name}", outcomes=arms))
    if not models:
        raise InvalidInput(f"{source}: no rows")
    return Converted(out, {"records": len(out), "arms": models, "skipped_empty": skipped})


def from_exploration(sources: Sequence[str]) -> Converted:
    seen: set[str] = set()
    out = []
    duplicates = 0
    for src in sources:
        for r in read_outcomes(src):
            if r.id is not None:
                if r.id in seen:
                    duplicates += 1
                    continue
                seen.add(r.id)
            out.append(r)
    arms = sorted({a for r in out for a in r.outcomes})
    return Converted(out, {"records": len(out), "arms": arms, "duplicates_dropped": duplicates, "files": len(sources)})


def convert(
    kind: str, inputs: Sequence[str], *, models: Sequence[str] | None = None, prompt_column: str = "prompt"
) -> Converted:
    if kind not in KINDS:
        raise InvalidInput(f"--from must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind != "exploration" and len(inputs) != 1:
        raise InvalidInput(f"--from {kind} takes one INPUT, got {len(inputs)}")
    if models and kind != "models":
        raise InvalidInput("--models only applies to --from models")
    if kind == "qwen3":
        return from_qwen3(inputs[0])
    if kind == "models":
        return from_models(inputs[0], models)
    if kind == "routellm":
        return from_routellm(inputs[0], prompt_column)
    return from_exploration(inputs)
