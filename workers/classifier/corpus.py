"""Training corpus for fine-tuning: questions with options (re-rendered each epoch), splits and targets.

The split is the one of ``workers.classifier.splits`` (a hash of the normalised question text, so identical
texts share a side). On top of it the Qwen3 replay questions (``mmlu_pro_cs_qwen3_think_vs_nothink``)
are kept out of every training set: they are the held-out data of ``thinkroute eval``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from workers.classifier.splits import GSM8K_SAMPLE, is_heldout, is_validation, normalise, render
from workers.data import (
    GSM8K_TRAIN,
    MMLU_DEV,
    MMLU_PRO_TEST,
    MMLU_SUBJECT_MAP,
    MODEL_CORRECTNESS,
    QWEN3_THINK,
    read_csv,
    read_json,
    read_jsonl,
)
from workers.data.prompts import format_mcq_prompt

AUX_TARGETS = ("error_rate", "log_out_chars")


@dataclass(frozen=True)
class Item:
    question: str
    options: tuple[str, ...]
    label: str
    source: str  # mmlu_pro | mmlu_dev | gsm8k
    key: str
    side: str  # train | validation | heldout | replay
    aux: tuple[float, ...] | None = None  # AUX_TARGETS, MMLU-Pro only
    question_ids: tuple[int, ...] = field(default=())

    def fixed_text(self, seed: int) -> str:
        """The rendering used for evaluation (the seeded coin of ``data.render``)."""
        return render(seed, self.question, list(self.options), self.key)[0]

    def random_text(self, rng: random.Random) -> str:
        """A training rendering: bare question, MCQ prompt, or MCQ without the instruction."""
        roll = rng.random()
        if not self.options or roll < 0.4:
            return self.question.strip()
        return format_mcq_prompt(self.question, self.options, instruction=roll < 0.8)


def replay_keys() -> set[str]:
    return {normalise(str(r["question"])) for r in read_jsonl(QWEN3_THINK)}


def model_stats() -> dict[int, tuple[float, float]]:
    """question_id -> (share of the 29 models that got it wrong, mean log(1 + answer characters))."""
    out: dict[int, tuple[float, float]] = {}
    for row in read_csv(MODEL_CORRECTNESS):
        flags: list[float] = []
        chars: list[float] = []
        for key, value in row.items():
            if key.endswith("__correct") and value != "":
                name = key.removesuffix("__correct")
                n = row.get(f"{name}__out_chars", "")
                if n != "":
                    flags.append(float(value == "1"))
                    chars.append(math.log1p(float(n)))
        if flags:
            out[int(row["question_id"])] = (1.0 - sum(flags) / len(flags), sum(chars) / len(chars))
    return out


def load_items(seed: int) -> tuple[list[Item], dict[str, Any]]:
    replay = replay_keys()
    stats = model_stats()
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in read_jsonl(MMLU_PRO_TEST):
        by_key[normalise(str(row["question"]))].append(row)
    items: list[Item] = []
    heldout_keys: set[str] = set()
    for key, rows in by_key.items():
        qids = tuple(int(r["question_id"]) for r in rows)
        known = [stats[q] for q in qids if q in stats]
        aux = tuple(sum(v[i] for v in known) / len(known) for i in range(2)) if known else None
        if key in replay:
            side = "replay"
        elif is_heldout(seed, key):
            side = "heldout"
            heldout_keys.add(key)
        elif is_validation(seed, key):
            side = "validation"
        else:
            side = "train"
        for r in rows:
            items.append(
                Item(
                    str(r["question"]),
                    tuple(str(o) for o in r["options"]),
                    str(r["category"]),
                    "mmlu_pro",
                    key,
                    side,
                    aux,
                    qids,
                )
            )
    subject_map: dict[str, str] = read_json(MMLU_SUBJECT_MAP)
    for row in read_jsonl(MMLU_DEV):
        category = subject_map.get(str(row["subject"]))
        key = normalise(str(row["question"]))
        if category is None or key in heldout_keys or key in replay:
            continue
        items.append(
            Item(str(row["question"]), tuple(str(c) for c in row["choices"]), category, "mmlu_dev", key, "train")
        )
    gsm = [str(r["question"]) for r in read_jsonl(GSM8K_TRAIN)]
    for i in sorted(random.Random(seed).sample(range(len(gsm)), min(GSM8K_SAMPLE, len(gsm)))):
        key = normalise(gsm[i])
        if key not in heldout_keys:
            items.append(Item(gsm[i].strip(), (), "math", "gsm8k", key, "train"))
    counts: dict[str, int] = defaultdict(int)
    for it in items:
        counts[f"{it.source}/{it.side}"] += 1
    return items, {"counts": dict(sorted(counts.items())), "replay_questions_excluded": len(replay)}
