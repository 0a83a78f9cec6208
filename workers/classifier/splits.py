"""Training data for the prompt classifier: sources, the held-out split and the text renderings."""

from __future__ import annotations

import hashlib
import re

from workers.data import GSM8K_TRAIN, MMLU_DEV, MMLU_PRO_TEST, MMLU_SUBJECT_MAP
from workers.data.prompts import format_mcq_prompt

HELDOUT_FRACTION = 0.20
VALIDATION_FRACTION = 0.15
GSM8K_SAMPLE = 1000
DATA_FILES = (MMLU_PRO_TEST, MMLU_DEV, MMLU_SUBJECT_MAP, GSM8K_TRAIN)

_WS = re.compile(r"\s+")


def normalise(question: str) -> str:
    return _WS.sub(" ", question).strip().lower()


def unit_hash(seed: int, salt: str, key: str) -> float:
    """A deterministic number in [0, 1) from (seed, salt, key)."""
    digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_heldout(seed: int, key: str) -> bool:
    return unit_hash(seed, "heldout", key) < HELDOUT_FRACTION


def is_validation(seed: int, key: str) -> bool:
    """The validation slice of the training side (where the L2 strength is chosen)."""
    return unit_hash(seed, "validation", key) < VALIDATION_FRACTION


def render(seed: int, question: str, options: list[str], key: str) -> tuple[str, str]:
    """One of two renderings by a seeded coin: the bare question or the pipeline's MCQ prompt."""
    if options and unit_hash(seed, "render", key) < 0.5:
        return format_mcq_prompt(question, options), "mcq"
    return question.strip(), "bare"
