"""Read a batch file: OpenAI Batch request lines or ``{"id", "prompt"}`` lines, validated at the edge.

Every bad line is reported with its number and the reason; nothing is submitted from a file with bad
lines unless the caller asks to skip them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from schemas.batch import BatchRequestLine, ChatBody, ChatMessage, SimplePromptLine
from workers.errors import BadInput


@dataclass(frozen=True)
class InputRequest:
    line: int
    custom_id: str
    body: ChatBody


def _describe(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def parse_line(raw: bytes, line: int, max_prompt_chars: int, max_tokens: int | None = None) -> InputRequest:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(line, f"not valid UTF-8 (byte {exc.start})") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(line, f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(obj, dict):
        raise BadInput(line, f"expected a JSON object, got {type(obj).__name__}")
    try:
        if "custom_id" in obj:
            req = BatchRequestLine.model_validate(obj)
            custom_id, body = req.custom_id, req.body
        elif "prompt" in obj or "id" in obj:
            simple = SimplePromptLine.model_validate(obj)
            custom_id = simple.id
            body = ChatBody(
                model=simple.model,
                messages=[ChatMessage(role="user", content=simple.prompt)],
                max_tokens=simple.max_tokens,
            )
        else:
            raise BadInput(
                line,
                "neither an OpenAI Batch request line (custom_id, method, url, body) nor a prompt line (id, prompt)",
            )
    except ValidationError as exc:
        raise BadInput(line, _describe(exc)) from exc
    size = sum(len(m.content) for m in body.messages)
    if size > max_prompt_chars:
        raise BadInput(line, f"prompt of {size} characters is over the limit of {max_prompt_chars}")
    if not any(m.content.strip() for m in body.messages):
        raise BadInput(line, "empty prompt")
    asked = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and asked is not None and asked > max_tokens:
        raise BadInput(line, f"max_tokens {asked} is over the limit of {max_tokens}")
    return InputRequest(line, custom_id, body)


def read_batch(
    path: Path, max_prompt_chars: int, max_tokens: int | None = None
) -> tuple[list[InputRequest], list[BadInput]]:
    """All good requests and all errors (bad lines, duplicate ids) of a file, in line order."""
    good: list[InputRequest] = []
    bad: list[BadInput] = []
    seen: dict[str, int] = {}
    for number, raw in _lines(path):
        try:
            req = parse_line(raw, number, max_prompt_chars, max_tokens)
        except BadInput as exc:
            bad.append(exc)
            continue
        if req.custom_id in seen:
            bad.append(BadInput(number, f"duplicate id {req.custom_id!r} (first on line {seen[req.custom_id]})"))
            continue
        seen[req.custom_id] = number
        good.append(req)
    return good, bad


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw
