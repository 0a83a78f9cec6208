"""The user's labelled prompts for ``thinkroute train --data``: reading the JSONL file and the split.

A line is a JSON object; its label is the string at ``label_field`` (a dotted path such as ``meta.topic``
reaches into nested objects), its text the string at ``text_field`` or, by default, the first present of
``prompt``, ``question`` (with ``options``/``choices`` written as the pipeline writes a multiple-choice
prompt, like ``thinkroute classify``), ``text``, or an OpenAI Batch line's ``body`` (the router's text:
the last user message). Errors name the line. The split is by a hash of the normalised text, like the
shipped classifier's (``workers.classifier.splits``), so duplicates always share a side.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from schemas.batch import ChatBody
from workers.classifier.splits import HELDOUT_FRACTION, VALIDATION_FRACTION, normalise, unit_hash
from workers.data.prompts import format_mcq_prompt
from workers.errors import BadInput, InvalidInput
from workers.router.text import prompt_text

MIN_EXAMPLES = 8  # per category
MIN_FOR_HELDOUT = 10  # a category this large always gets held-out examples
DEFAULT_TEXT_FIELDS = ("prompt", "question", "text")
_MISSING = object()

Side = Literal["train", "validation", "heldout"]


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    line: int
    side: Side = "train"


def lookup(row: dict[str, Any], field: str) -> Any:
    """The value at ``field`` (a key, or a dotted path into nested objects); ``_MISSING`` when absent."""
    if field in row:
        return row[field]
    value: Any = row
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _text(row: dict[str, Any], text_field: str | None) -> str:
    """The prompt text of one line (raises ValueError naming what is wrong)."""
    if text_field is not None:
        value = lookup(row, text_field)
        if value is _MISSING:
            raise ValueError(f"no `{text_field}` field")
        if isinstance(value, list):  # chat messages
            return prompt_text(ChatBody.model_validate({"messages": value}))
        if isinstance(value, dict):  # a chat body
            return prompt_text(ChatBody.model_validate(value))
        if not isinstance(value, str):
            raise ValueError(f"`{text_field}` is not a string (got {type(value).__name__})")
        return value
    for name in DEFAULT_TEXT_FIELDS:
        if name in row:
            value = row[name]
            if not isinstance(value, str):
                raise ValueError(f"`{name}` is not a string (got {type(value).__name__})")
            if name == "question":
                options = row.get("options") if row.get("options") is not None else row.get("choices")
                if options and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
                    raise ValueError("options/choices must be a list of strings")
                return format_mcq_prompt(value, options) if options else value
            return value
    if isinstance(row.get("body"), dict):
        return prompt_text(ChatBody.model_validate(row["body"]))
    raise ValueError(
        f"no text: a line needs one of {', '.join(DEFAULT_TEXT_FIELDS)}, an OpenAI Batch `body`, or --text-field"
    )


def read_labelled(path: Path, label_field: str, text_field: str | None = None) -> list[Example]:
    """Every non-blank line of ``path`` as an example; raises ``BadInput`` (with the line number) on the
    first bad line and ``InvalidInput`` when the categories cannot be trained (fewer than 2, or one with
    fewer than ``MIN_EXAMPLES`` examples)."""
    examples: list[Example] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    with handle as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise BadInput(n, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(row, dict):
                raise BadInput(n, f"expected a JSON object, got {type(row).__name__}")
            label = lookup(row, label_field)
            if label is _MISSING:
                raise BadInput(n, f"no `{label_field}` field (the label)")
            if not isinstance(label, str):
                raise BadInput(n, f"the label `{label_field}` is not a string (got {type(label).__name__})")
            if not label.strip():
                raise BadInput(n, f"the label `{label_field}` is empty")
            try:
                text = _text(row, text_field)
            except (ValueError, ValidationError) as exc:
                raise BadInput(n, str(exc).splitlines()[0]) from None
            if not text.strip():
                raise BadInput(n, "empty text")
            examples.append(Example(text, label.strip(), n))
    check_categories(examples, path)
    return examples


def check_categories(examples: list[Example], where: Path | str = "the data") -> Counter[str]:
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        found = f"only {next(iter(counts))!r}" if counts else "none"
        raise InvalidInput(f"{where}: a classifier needs at least 2 categories, found {found}")
    small = sorted((c, n) for c, n in counts.items() if n < MIN_EXAMPLES)
    if small:
        named = ", ".join(f"{c!r} ({n})" for c, n in small)
        raise InvalidInput(f"{where}: every category needs at least {MIN_EXAMPLES} examples; too few: {named}")
    return counts


def split(examples: list[Example], seed: int) -> list[Example]:
    """Each example with its side: held-out when sha256(seed, 'heldout', normalised text) < HELDOUT_FRACTION,
    else validation when sha256(seed, 'validation', ...) < VALIDATION_FRACTION, else train. A category with at
    least MIN_FOR_HELDOUT distinct texts and none held out by the hash gets its lowest-hash texts held out
    (round(HELDOUT_FRACTION * distinct)), so every such category is measured. Raises ``InvalidInput`` when a
    category ends up with no training example."""
    keys = [normalise(e.text) for e in examples]
    heldout = {k for k in keys if unit_hash(seed, "heldout", k) < HELDOUT_FRACTION}
    by_label: dict[str, set[str]] = {}
    for e, k in zip(examples, keys, strict=True):
        by_label.setdefault(e.label, set()).add(k)
    for distinct in by_label.values():
        if len(distinct) >= MIN_FOR_HELDOUT and not distinct & heldout:
            ranked = sorted(distinct, key=lambda k: unit_hash(seed, "heldout", k))
            heldout.update(ranked[: round(HELDOUT_FRACTION * len(distinct))])
    out: list[Example] = []
    for e, k in zip(examples, keys, strict=True):
        side: Side = (
            "heldout"
            if k in heldout
            else "validation"
            if unit_hash(seed, "validation", k) < VALIDATION_FRACTION
            else "train"
        )
        out.append(Example(e.text, e.label, e.line, side))
    trained = {e.label for e in out if e.side == "train"}
    missing = sorted(set(by_label) - trained)
    if missing:
        raise InvalidInput(f"no training examples left for {missing} after the held-out/validation split: add examples")
    return out
