"""Training data for the prompt classifier: sources, the held-out split and the text renderings."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workers.data import GSM8K_TRAIN, MMLU_DEV, MMLU_PRO_TEST, MMLU_SUBJECT_MAP, read_json, read_jsonl
from workers.prompts import format_mcq_prompt

HELDOUT_FRACTION = 0.20
VALIDATION_FRACTION = 0.15
GSM8K_SAMPLE = 1000
DATA_FILES = (MMLU_PRO_TEST, MMLU_DEV, MMLU_SUBJECT_MAP, GSM8K_TRAIN)

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str  # "mmlu_pro" | "mmlu_dev" | "gsm8k"
    key: str  # normalised question text (the unit of the split)
    rendering: str  # "bare" | "mcq"
    heldout: bool


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


def load_examples(seed: int) -> tuple[list[Example], dict[str, Any]]:
    """All examples (MMLU-Pro with a held-out flag; extra sources on the training side only)."""
    examples: list[Example] = []
    pro_keys: set[str] = set()
    heldout_keys: set[str] = set()
    for row in read_jsonl(MMLU_PRO_TEST):
        key = normalise(str(row["question"]))
        held = is_heldout(seed, key)
        pro_keys.add(key)
        if held:
            heldout_keys.add(key)
        text, how = render(seed, str(row["question"]), [str(o) for o in row["options"]], key)
        examples.append(Example(text, str(row["category"]), "mmlu_pro", key, how, held))
    n_pro = len(examples)

    subject_map: dict[str, str] = read_json(MMLU_SUBJECT_MAP)
    dev_unmapped = dev_dropped = 0
    for row in read_jsonl(MMLU_DEV):
        category = subject_map.get(str(row["subject"]))
        if category is None:
            dev_unmapped += 1
            continue
        key = normalise(str(row["question"]))
        if key in heldout_keys:
            dev_dropped += 1
            continue
        text, how = render(seed, str(row["question"]), [str(c) for c in row["choices"]], key)
        examples.append(Example(text, category, "mmlu_dev", key, how, False))
    n_dev = len(examples) - n_pro

    gsm = [str(r["question"]) for r in read_jsonl(GSM8K_TRAIN)]
    sample = sorted(random.Random(seed).sample(range(len(gsm)), min(GSM8K_SAMPLE, len(gsm))))
    for i in sample:
        key = normalise(gsm[i])
        if key in heldout_keys:
            continue
        examples.append(Example(gsm[i].strip(), "math", "gsm8k", key, "bare", False))
    n_gsm = len(examples) - n_pro - n_dev

    data_info: dict[str, Any] = {
        "sources": {
            "mmlu_pro_test": {"file": MMLU_PRO_TEST, "count": n_pro},
            "mmlu_dev": {
                "file": MMLU_DEV,
                "count": n_dev,
                "unmapped_subjects_skipped": dev_unmapped,
                "dropped_overlapping_heldout": dev_dropped,
                "mapping": MMLU_SUBJECT_MAP,
            },
            "gsm8k_train": {"file": GSM8K_TRAIN, "count": n_gsm, "label": "math", "sampled_from": len(gsm)},
        },
        "total": len(examples),
        "renderings": dict(Counter(e.rendering for e in examples)),
        "label_counts": dict(sorted(Counter(e.label for e in examples).items())),
        "mmlu_pro_distinct_questions": len(pro_keys),
    }
    return examples, data_info
