"""How a multiple-choice question is written as a chat prompt (samples, replay lookup, classify)."""

from __future__ import annotations

from collections.abc import Sequence

LETTERS = "ABCDEFGHIJKLMNOP"

MCQ_INSTRUCTION = (
    "Answer the following multiple choice question. Think it through, then finish with "
    '"The answer is (X)" where X is the letter of the correct option.'
)


def format_options(options: Sequence[str]) -> str:
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options are supported, got {len(options)}")
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def format_mcq_prompt(question: str, options: Sequence[str] = (), instruction: bool = True) -> str:
    """The user message an evaluation sends for one question (MMLU-Pro style)."""
    parts = [MCQ_INSTRUCTION, ""] if instruction else []
    parts.append(f"Question: {question.strip()}")
    if options:
        parts += ["Options:", format_options(options)]
    return "\n".join(parts)
