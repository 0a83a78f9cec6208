"""``thinkroute classify``: route the lines of a JSONL file with the router's classifier and policy.

A line carries ``question`` (optional ``options`` or ``choices``: lists of strings; written as the
pipeline writes a multiple-choice prompt), or ``prompt``, or is an OpenAI Batch request line (the text
is the last user message, as the router reads it). Every field is passed through; the route is added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from schemas.batch import ChatBody
from workers.classifier.model import Classifier
from workers.data.prompts import format_mcq_prompt
from workers.errors import InvalidInput
from workers.router.policy import Policy
from workers.router.text import prompt_text

ADDED = (
    "category",
    "confidence",
    "use_reasoning",
    "reasoning_effort",
    "reasoning_score",
    "route",
    "model",
    "reason",
    "truncated",
    "policy_version",
    "classifier_version",
)


def line_text(line: dict[str, Any]) -> tuple[str, str | None]:
    """(text the classifier reads, model named by the line) for one input line."""
    if "question" in line:
        options = line.get("options") if line.get("options") is not None else line.get("choices")
        options = options or []
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise ValueError("options/choices must be a list of strings")
        return format_mcq_prompt(str(line["question"]), options), line.get("model")
    if "prompt" in line:
        if not isinstance(line["prompt"], str):
            raise ValueError("prompt must be a string")
        return line["prompt"], line.get("model")
    if isinstance(line.get("body"), dict):
        body = ChatBody.model_validate(line["body"])
        return prompt_text(body), body.model
    raise ValueError("a line needs `question`, `prompt` or an OpenAI Batch `body`")


def read_lines(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                line_text(row)
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f"{path}:{n}: {exc}") from exc
            rows.append(row)
    return rows


def classify_rows(
    rows: Sequence[dict[str, Any]], classifier: Classifier, policy: Policy, default_model: str
) -> Iterator[dict[str, Any]]:
    """Input rows with the route added, in input order (one classifier call, as the router batches)."""
    pairs = [line_text(r) for r in rows]
    classes = classifier.classify([t for t, _ in pairs])
    for row, (_, model), c in zip(rows, pairs, classes, strict=True):
        decision = policy.decide(c, model, default_model, classifier.version)
        yield {**row, **decision.model_dump(mode="json", include=set(ADDED))}
