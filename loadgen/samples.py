"""Write the sample batch files shipped in ``loadgen/samples`` (deterministic: same seed, same files).

* ``mmlu_pro_200.jsonl``: 200 OpenAI Batch request lines for Qwen3-30B-A3B, 14 or 15 MMLU-Pro questions
  from each of the 14 categories (15 for the four largest), in a seeded random order. The computer-science
  ones are drawn from the 205 questions with recorded Qwen3 outputs, so the replay server answers them
  from real records; questions whose text and options occur twice in MMLU-Pro are skipped, so each line
  maps back to exactly one question id. Each line carries its answer letter as ``metadata.reference`` (kept by
  ThinkRoute, never sent to the LLM), so results are graded and a job's savings report gives accuracy.
* ``prompts_20.jsonl``: 20 ``{"id", "prompt"}`` lines, 8 MMLU-Pro questions (4 bare question texts, 4 with
  their options) and 12 free-form prompts that are not in the data, shuffled.

Run ``python -m loadgen.samples [--out-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workers import data
from workers.data.prompts import format_mcq_prompt
from workers.replay.index import normalize

logger = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
MMLU_PRO_200 = "mmlu_pro_200.jsonl"
PROMPTS_20 = "prompts_20.jsonl"
SEED = 20240611
MODEL = "Qwen/Qwen3-30B-A3B"
MAX_TOKENS = 8192
N_REQUESTS = 200
N_MMLU_PROMPTS = 8

FREE_FORM_PROMPTS = (
    "Translate into French: 'The meeting has been moved to Thursday afternoon.'",
    "Write a haiku about the first snow of winter.",
    "What is the capital of Australia?",
    "Summarise in two sentences why regular backups matter for a small business.",
    "A train leaves at 09:40 and travels 315 km at an average of 84 km/h. At what time does it arrive? "
    "Show your working.",
    "Prove that the square root of 2 is irrational.",
    "This Python function should return the n-th Fibonacci number but is too slow for n = 80. "
    "Explain why and fix it:\n\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may take one fruit "
    "from one box. How do you relabel all three boxes correctly?",
    "Suggest a name for a bakery that specialises in sourdough bread.",
    "Convert 72 degrees Fahrenheit to Celsius.",
    "Plan a 3-day itinerary for a first visit to Kyoto on a modest budget.",
    "How many distinct ways can 8 non-attacking rooks be placed on a standard chessboard? Explain.",
)


def _unique_questions(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows whose (question, options) occurs only once in MMLU-Pro."""
    rows = list(rows)
    keys = Counter(_key(r) for r in rows)
    return [r for r in rows if keys[_key(r)] == 1]


def _key(row: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    return normalize(row["question"]), tuple(normalize(o) for o in row["options"])


def _request_line(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "custom_id": f"mmlu-pro-{row['question_id']}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "messages": [{"role": "user", "content": format_mcq_prompt(row["question"], row["options"])}],
            "max_tokens": MAX_TOKENS,
            "metadata": {"reference": row["answer"]},
        },
    }


def build_samples(seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """The lines of both sample files, by file name."""
    rng = random.Random(seed)
    rows = _unique_questions(data.read_jsonl(data.MMLU_PRO_TEST))
    recorded = {int(r["question_id"]) for r in data.read_jsonl(data.QWEN3_THINK)}
    by_cat: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: int(r["question_id"])):
        if row["category"] != "computer science" or int(row["question_id"]) in recorded:
            by_cat[row["category"]].append(row)
    categories = sorted(by_cat, key=lambda c: (-len(by_cat[c]), c))
    base, extra = divmod(N_REQUESTS, len(categories))
    picked: list[Mapping[str, Any]] = []
    for i, cat in enumerate(categories):
        picked += rng.sample(by_cat[cat], base + (1 if i < extra else 0))
    rng.shuffle(picked)
    requests = [_request_line(r) for r in picked]

    chosen = {int(r["question_id"]) for r in picked}
    spare = [r for cat in sorted(by_cat) for r in by_cat[cat] if int(r["question_id"]) not in chosen]
    mmlu = rng.sample(spare, N_MMLU_PROMPTS)
    texts = [
        r["question"].strip() if i % 2 == 0 else format_mcq_prompt(r["question"], r["options"], instruction=False)
        for i, r in enumerate(mmlu)
    ]
    texts += FREE_FORM_PROMPTS
    rng.shuffle(texts)
    prompts = [{"id": f"prompt-{i:02d}", "prompt": text} for i, text in enumerate(texts, start=1)]
    return {MMLU_PRO_200: requests, PROMPTS_20: prompts}


def write_samples(out_dir: Path = SAMPLES_DIR, seed: int = SEED) -> list[Path]:
    """Write both sample files into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, lines in build_samples(seed).items():
        path = out_dir / name
        with path.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        logger.info("wrote %d lines to %s", len(lines), path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadgen.samples", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=SAMPLES_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    for path in write_samples(args.out_dir, args.seed):
        print(path)


if __name__ == "__main__":
    main()
