"""The data sets shipped inside the package (xz-compressed; see README, Data)."""

from __future__ import annotations

import csv
import io
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent

MMLU_PRO_TEST = "mmlu_pro_test.jsonl"
MODEL_CORRECTNESS = "mmlu_pro_test_model_correctness.csv"
MODEL_PREDS = "mmlu_pro_test_model_preds.csv"
QWEN3_THINK = "mmlu_pro_cs_qwen3_think_vs_nothink.jsonl"
MMLU_DEV = "mmlu_dev.jsonl"
GSM8K_TRAIN = "gsm8k_train.jsonl"
MMLU_SUBJECT_MAP = "mmlu_subject_to_mmlu_pro_category.json"


def path(name: str) -> Path:
    """Path of the compressed file holding data set `name` (e.g. ``mmlu_pro_test.jsonl``)."""
    p = DATA_DIR / f"{name}.xz"
    if not p.is_file():
        raise FileNotFoundError(f"data set {name!r} is not shipped in {DATA_DIR}")
    return p


def open_text(name: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(lzma.open(path(name), "rb"), encoding="utf-8")


def read_jsonl(name: str) -> Iterator[dict[str, Any]]:
    with open_text(name) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_csv(name: str) -> Iterator[dict[str, str]]:
    with open_text(name) as f:
        yield from csv.DictReader(f)


def read_json(name: str) -> Any:
    with open_text(name) as f:
        return json.load(f)
