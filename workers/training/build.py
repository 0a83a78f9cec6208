"""Build the classifier artefact: embed the training data, fit the head, compose and verify the ONNX."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workers.data import path as data_path
from workers.prompts import MCQ_INSTRUCTION
from workers.router.classifier import DEFAULT_MAX_LENGTH, HEAD_FRACTION, TextEncoder, create_session
from workers.training.data import DATA_FILES, GSM8K_SAMPLE, HELDOUT_FRACTION, is_validation, load_examples
from workers.training.graph import (
    ENCODER_PACKAGE,
    ENCODER_VERSION,
    compose,
    embed,
    encoder_path,
    load_encoder,
    verify,
)
from workers.training.head import evaluate, select_l2, train_logreg

log = logging.getLogger(__name__)

# Bump when the recipe changes (data, renderings, head, pooling): a new fingerprint means a rebuild.
RECIPE_VERSION = "thinkroute-classifier/1"
DEFAULT_SEED = 13
BALANCED = False  # class-balanced weights cost ~0.8 points of held-out accuracy (and of macro-F1)
TOKENIZER_ASSET = Path(__file__).resolve().parent.parent / "router" / "assets" / "tokenizer.json"
ARTIFACT_FILES = ("model.onnx", "tokenizer.json", "labels.json", "card.json")


@lru_cache(maxsize=8)
def fingerprint(seed: int = DEFAULT_SEED) -> str:
    """Short hash of what determines the artefact: recipe, data files, tokenizer, encoder, seed."""
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}|seed={seed}|max_length={DEFAULT_MAX_LENGTH}|head={HEAD_FRACTION}".encode())
    h.update(f"|balanced={BALANCED}|gsm8k={GSM8K_SAMPLE}|heldout={HELDOUT_FRACTION}".encode())
    h.update(MCQ_INSTRUCTION.encode())
    for name in DATA_FILES:
        h.update(name.encode())
        h.update(data_path(name).read_bytes())
    h.update(TOKENIZER_ASSET.read_bytes())
    enc = encoder_path()
    h.update(f"{ENCODER_PACKAGE}=={ENCODER_VERSION}|{enc.name}|{enc.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _embed_all(texts: list[str], encoder: TextEncoder, providers: str, progress: bool) -> np.ndarray:
    model = load_encoder(simplify=True)
    session = create_session(model.SerializeToString(), providers)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("embedding training texts", total=len(texts))
        return embed(session, encoder, texts, on_batch=lambda n: bar.advance(task, n))


def _train(seed: int, progress: bool, providers: str) -> tuple[Any, ...]:
    start = time.monotonic()
    examples, data_info = load_examples(seed)
    encoder = TextEncoder.from_file(TOKENIZER_ASSET, DEFAULT_MAX_LENGTH)
    labels = sorted({e.label for e in examples if e.source == "mmlu_pro"})
    index = {c: i for i, c in enumerate(labels)}
    y = np.array([index[e.label] for e in examples], dtype=np.int64)
    x = _embed_all([e.text for e in examples], encoder, providers, progress)
    embed_s = time.monotonic() - start

    held = np.array([e.heldout for e in examples])
    val = np.array([e.source == "mmlu_pro" and not e.heldout and is_validation(seed, e.key) for e in examples])
    fit = ~held & ~val
    l2, trials = select_l2(x[fit], y[fit], x[val], y[val], len(labels), balanced=BALANCED)
    head = train_logreg(x[~held], y[~held], len(labels), l2, balanced=BALANCED)
    metrics = evaluate(y[held], head.logits(x[held]).argmax(axis=1), labels)
    log.info("held-out accuracy %.4f, macro-F1 %.4f", metrics["heldout_accuracy"], metrics["heldout_macro_f1"])

    split = {
        "how": (
            f"MMLU-Pro questions held out when sha256(seed, 'heldout', normalised question text) falls "
            f"below {HELDOUT_FRACTION} (identical texts always share a side); MMLU dev and GSM8K train "
            f"only; L2 strength chosen on a {0.15:.0%} hash slice of the training side's MMLU-Pro questions"
        ),
        "total": len(examples),
        "train": int((~held).sum()),
        "heldout": int(held.sum()),
        "validation": int(val.sum()),
        "train_mmlu_pro": sum(1 for e in examples if e.source == "mmlu_pro" and not e.heldout),
    }
    head_info = {
        "kind": "multinomial logistic regression",
        "l2": l2,
        "class_balanced": BALANCED,
        "l2_trials": trials,
        "embed_seconds": round(embed_s, 1),
    }
    texts = [e.text for e in examples]
    sample = [texts[i] for i in np.flatnonzero(held)[:6]] + ["", max(texts, key=len)]
    return head, labels, encoder, data_info, split, metrics, head_info, sample


def build_artifact(
    out_dir: Path, *, seed: int = DEFAULT_SEED, progress: bool = True, providers: str = "auto"
) -> dict[str, Any]:
    """Build the artefact into ``out_dir`` (atomically) and return its card."""
    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    head, labels, encoder, data_info, split, metrics, head_info, sample = _train(seed, progress, providers)
    version = fingerprint(seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model = compose(load_encoder(simplify=True), head, labels, version)
        onnx.save(model, str(tmp / "model.onnx"))
        shutil.copyfile(TOKENIZER_ASSET, tmp / "tokenizer.json")
        (tmp / "labels.json").write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
        max_diff = verify(tmp / "model.onnx", encoder, head, sample)
        card: dict[str, Any] = {
            "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoder": f"all-MiniLM-L6-v2 int8 ({ENCODER_PACKAGE} {ENCODER_VERSION})",
            "pooling": "masked mean over tokens, then L2 normalisation",
            "head": (
                f"logistic regression (numpy, full-batch Adam, L2={head_info['l2']:g}, "
                f"{'class-balanced' if BALANCED else 'unweighted'}) on the pooled embedding"
            ),
            "head_details": head_info,
            "max_length": encoder.max_length,
            "truncation": f"head+tail: [CLS] + first {HEAD_FRACTION:.0%} + last tokens + [SEP]",
            "labels": labels,
            "data": data_info,
            "split": split,
            "metrics": metrics,
            "verify_max_abs_diff": max_diff,
            "sizes": {"model_onnx_bytes": (tmp / "model.onnx").stat().st_size},
            "seed": seed,
            "build_seconds": round(time.monotonic() - start, 1),
        }
        (tmp / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("classifier artefact %s written to %s", version, out_dir)
    return card


def report(card: dict[str, Any]) -> str:
    """The held-out report of an artefact card, as plain text."""
    m = card["metrics"]
    split = card.get("split", {})
    lines = [
        f"classifier {card.get('version', '?')}  ({card.get('encoder', '')}; {card.get('head', '')})",
        f"held-out: {split.get('heldout', '?')} MMLU-Pro questions, trained on {split.get('train', '?')}",
        f"accuracy {m['heldout_accuracy']:.4f}   macro-F1 {m['heldout_macro_f1']:.4f}",
        "",
        f"{'category':<18} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>5}",
    ]
    for cat, row in sorted(m["per_category"].items(), key=lambda kv: -kv[1]["f1"]):
        lines.append(f"{cat:<18} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['n']:>5}")
    if m.get("top_confusions"):
        lines += ["", "top confusions (true -> predicted: count)"]
        lines += [f"  {t} -> {p}: {c}" for t, p, c in m["top_confusions"]]
    return "\n".join(lines)
