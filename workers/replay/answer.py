"""The reply the replay server gives for one recorded (or synthetic) output; see `workers.replay.records`."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

Effort = Literal["low", "medium", "high"]

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 8
ANSWER_TOKENS = 7  # "The answer is (X)." after the thinking block
SYNTHETIC_PREFIX = "[synthetic replay answer: prompt not in the recorded data]"
NO_ANSWER = "No answer was extracted from the recorded output."
NO_LETTER = "No answer letter is stored for this record (it was scored incorrect)."


@dataclass(frozen=True, slots=True)
class Mode:
    thinking: bool
    effort: Effort | None = None

    @property
    def tag(self) -> str:
        if not self.thinking:
            return "nothink"
        return f"think:{self.effort}" if self.effort else "think"

    @property
    def qwen3_key(self) -> str:
        return "think" if self.tag == "think:high" else self.tag


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded output: the letter (None: no letter, `note` says why), its length, its correctness."""

    letter: str | None
    tokens: float
    correct: bool | None = None
    note: str = NO_ANSWER


@dataclass(frozen=True, slots=True)
class ReplayAnswer:
    content: str
    reasoning_content: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    source: str
    question_id: int | None = None
    answer_letter: str | None = None

    def capped(self, max_tokens: int | None) -> tuple[ReplayAnswer, Literal["stop", "length"]]:
        """The reply as a server with this `max_tokens` sends it, and its finish reason."""
        if max_tokens is None or self.completion_tokens <= max_tokens:
            return self, "stop"
        cut = f" (cut at max_tokens={max_tokens})"
        if max_tokens <= self.reasoning_tokens:
            reasoning = None if self.reasoning_content is None else self.reasoning_content + cut
            return replace(
                self,
                content="",
                reasoning_content=reasoning,
                completion_tokens=max_tokens,
                reasoning_tokens=max_tokens,
                answer_letter=None,
            ), "length"
        content = f"[replay: output not stored; cut at max_tokens={max_tokens} before its final answer]"
        return replace(self, content=content, completion_tokens=max_tokens, answer_letter=None), "length"


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The last user message; the whole conversation when there is no user turn."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return message_text(msg.get("content"))
    return "\n".join(message_text(m.get("content")) for m in messages)


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Modelled: ceil(characters / 4) + 8 per message."""
    return sum(
        math.ceil(len(message_text(m.get("content"))) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )


def seed_unit(text: str) -> float:
    """A deterministic number in [0, 1) from the text."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def reply(recorded: Recorded, thinking: bool, prompt_tokens: int, source: str, qid: int | None) -> ReplayAnswer:
    tokens = max(1, math.ceil(recorded.tokens))
    content = f"The answer is ({recorded.letter})." if recorded.letter else recorded.note
    reasoning_tokens = max(0, tokens - ANSWER_TOKENS) if thinking else 0
    reasoning = None
    if thinking:
        what = "recorded" if source == "record" else f"proxy ({source.removeprefix('proxy:')}) recorded"
        reasoning = f"[replay: the {what} chain of thought is not stored; length {reasoning_tokens} tokens]"
    return ReplayAnswer(content, reasoning, prompt_tokens, tokens, reasoning_tokens, source, qid, recorded.letter)


def synthetic(text: str, mean_tokens: float, thinking: bool, prompt_tokens: int) -> ReplayAnswer:
    unit = seed_unit(text)
    tokens = max(ANSWER_TOKENS + 1, round(max(mean_tokens, 1.0) * (0.5 + unit)))
    reasoning_tokens = tokens - ANSWER_TOKENS if thinking else 0
    content = (
        f"{SYNTHETIC_PREFIX} No recorded output exists for this prompt; this reply stands in for one of "
        f"{tokens - reasoning_tokens} tokens (variant {int(unit * 65536):04x})."
    )
    reasoning = None
    if thinking:
        reasoning = f"[synthetic replay reasoning: none recorded; modelled length {reasoning_tokens} tokens]"
    return ReplayAnswer(content, reasoning, prompt_tokens, tokens, reasoning_tokens, "synthetic")
