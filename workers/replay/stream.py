"""``stream: true``: a chat completion as OpenAI's server-sent events.

The chunks are cut from the complete (non-streamed) body, so their deltas add up to exactly its message:
a first chunk with the role, the reasoning (``delta.reasoning_content``, vLLM's field) and the content in
word-sized pieces (one piece per token when log-probabilities were asked for, each carrying its token's
entry), a last chunk with the finish reason and, when ``stream_options.include_usage`` is set, a chunk with
``choices: []`` and the usage (every other chunk then has ``usage: null``), then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

DONE = b"data: [DONE]\n\n"
_PIECE = re.compile(r"(?<=\s)(?=\S)")


def pieces(text: str | None) -> list[str]:
    """``text`` cut before each word (whitespace stays with the word before it); none for empty text."""
    return [p for p in _PIECE.split(text) if p] if text else []


def chunks(body: Mapping[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """The chunk objects of a complete ``chat.completion`` body (module doc)."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
        "system_fingerprint": body.get("system_fingerprint"),
    }
    choice = body["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        out = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}
        if include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": ""})
    for piece in pieces(message.get("reasoning_content")):
        yield chunk({"reasoning_content": piece})
    content = message.get("content") or ""
    tokens = (choice.get("logprobs") or {}).get("content") or []
    if tokens and "".join(t["token"] for t in tokens) == content:
        for tok in tokens:
            yield chunk({"content": tok["token"]}, logprobs={"content": [tok]})
    else:
        for piece in pieces(content):
            yield chunk({"content": piece})
    yield chunk({}, choice["finish_reason"])
    if include_usage:
        yield {**base, "choices": [], "usage": body["usage"]}


def event(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
