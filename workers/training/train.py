"""``thinkroute train``: fine-tune the classifier and write the shipped adapter and its card.

Writes ``workers/router/assets/adapter.npz`` and ``classifier_card.json`` (or another ``out_dir``); the
runtime artefact is composed from them without torch (``workers.training.build``). Held-out metrics are
measured on the composed ONNX model through ``Classifier`` (the router's code), not on torch.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workers.data import GSM8K_TRAIN, read_jsonl
from workers.router.classifier import DEFAULT_MAX_LENGTH, HEAD_FRACTION, Classifier, TextEncoder
from workers.training.build import ADAPTER_ASSET, CARD_ASSET, DEFAULT_SEED, TOKENIZER_ASSET, write_artifact
from workers.training.corpus import AUX_TARGETS, Item, load_items
from workers.training.data import GSM8K_SAMPLE, HELDOUT_FRACTION, VALIDATION_FRACTION, is_heldout, normalise
from workers.training.graph import ENCODER_PACKAGE, ENCODER_VERSION
from workers.training.head import evaluate

log = logging.getLogger(__name__)

N_REFERENCE = 24
N_GSM8K_CHECK = 500


def _accuracy(clf: Classifier, texts: list[str], labels: list[str]) -> dict[str, Any]:
    pred = [c.category for c in clf.classify(texts)]
    return {"accuracy": round(float(np.mean([p == y for p, y in zip(pred, labels, strict=True)])), 4), "n": len(texts)}


def _unseen_gsm8k(seed: int) -> list[str]:
    """GSM8K train questions outside the sample used for training (another source's wording: math)."""
    gsm = [str(r["question"]).strip() for r in read_jsonl(GSM8K_TRAIN)]
    used = set(random.Random(seed).sample(range(len(gsm)), min(GSM8K_SAMPLE, len(gsm))))
    rest = [q for i, q in enumerate(gsm) if i not in used]
    return random.Random(seed + 1).sample(rest, min(N_GSM8K_CHECK, len(rest)))


def train_classifier(
    out_dir: Path | None = None, seed: int = DEFAULT_SEED, epochs: float = 2.0, resume: Path | None = None
) -> dict[str, Any]:
    """Train, compose, measure; write adapter.npz + classifier_card.json into ``out_dir`` (the assets).

    ``resume``: an adapter saved by an earlier run of the same recipe (skips the fitting, ~20 min).
    """
    from workers.training.finetune import Hyper, export_heads, predict, train
    from workers.training.graph import load_encoder
    from workers.training.torch_model import Encoder
    from workers.training.weights import base_weights, load_adapter

    start = time.monotonic()
    out = Path(out_dir) if out_dir is not None else ADAPTER_ASSET.parent
    items, counts = load_items(seed)
    labels = sorted({it.label for it in items if it.source == "mmlu_pro"})
    fit = [it for it in items if it.side == "train"]
    aux = np.array([it.aux for it in fit if it.aux is not None], dtype=np.float64)
    norm = tuple((float(aux[:, i].mean()), float(aux[:, i].std())) for i in range(aux.shape[1]))
    tokenizer = TextEncoder.from_file(TOKENIZER_ASSET, DEFAULT_MAX_LENGTH)
    hp = Hyper(epochs=epochs)
    if resume is None:
        model = train(fit, labels, tokenizer, seed, hp, norm)
    else:
        model = Encoder(base_weights(load_encoder()), hp.rank, hp.alpha, len(labels), len(norm))
        model.load_adapter(load_adapter(resume))
        model.eval()
    train_s = time.monotonic() - start

    adapter: dict[str, Any] = {**model.adapter(), **export_heads(model)}
    mean0, sd0 = norm[0]  # reasoning score = predicted error rate of the 29 recorded models, in [0, 1] units
    adapter["score/W"] = (adapter["aux/W"][:, :1] * sd0).astype(np.float32)
    adapter["score/b"] = (adapter["aux/b"][:1] * sd0 + mean0).astype(np.float32)

    held = [it for it in items if it.source == "mmlu_pro" and is_heldout(seed, it.key)]
    val = [it for it in items if it.side == "validation"]
    held_texts = [it.fixed_text(seed) for it in held]
    long_text = max(held_texts, key=len)
    ref_texts = [*held_texts[:N_REFERENCE], "", long_text, "What is 12 times 12?"]
    card: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": f"all-MiniLM-L6-v2 int8 ({ENCODER_PACKAGE} {ENCODER_VERSION}), LoRA-fine-tuned",
        "pooling": "masked mean over tokens, then L2 normalisation",
        "head": "linear + softmax (category); linear (reasoning score = predicted error rate of 29 models)",
        "labels": labels,
        "truncation": f"head+tail: [CLS] + first {HEAD_FRACTION:.0%} + last tokens + [SEP]; flagged",
        "training": {
            "hyper": hp.__dict__,
            "train_window": hp.max_length,
            "aux_targets": list(AUX_TARGETS),
            "aux_norm": norm,
            "seconds": round(train_s, 1) if resume is None else None,
            "renderings": "each epoch: bare question 40%, MCQ prompt 40%, MCQ without instruction 20%",
        },
        "data": {"sources": counts["counts"], "replay_questions_excluded": counts["replay_questions_excluded"]},
        "split": {
            "how": (
                f"MMLU-Pro questions held out when sha256(seed, 'heldout', normalised question) < "
                f"{HELDOUT_FRACTION}; validation slice {VALIDATION_FRACTION} of the rest (not trained on: score "
                f"and policy calibration); the 205 Qwen3 replay questions are never trained on"
            ),
            "heldout": len(held),
            "validation": len(val),
            "train": len(fit),
            "train_sources": {"mmlu_dev": "mapped subjects", "gsm8k": f"{GSM8K_SAMPLE} train questions"},
        },
        "seed": seed,
        "reference": {"texts": ref_texts},
    }
    with tempfile.TemporaryDirectory(prefix="thinkroute-train-") as tmp:
        write_artifact(Path(tmp), adapter, card, "train-preview")
        clf = Classifier.load(Path(tmp), providers="cpu")
        held_pred = clf.classify(held_texts)
        y = np.array([labels.index(it.label) for it in held])
        pred = np.array([labels.index(c.category) for c in held_pred])
        card["metrics"] = evaluate(y, pred, labels)
        adapter["reference/probs"] = clf.predict_proba(ref_texts)
        torch_probs = predict(model, tokenizer, held_texts)["probs"]
        torch_acc = float((torch_probs.argmax(1) == y).mean())
        card["onnx_vs_torch"] = {
            "torch_heldout_accuracy": round(torch_acc, 4),
            "onnx_int8_heldout_accuracy": card["metrics"]["heldout_accuracy"],
            "max_abs_prob_diff": round(float(np.abs(clf.predict_proba(held_texts) - torch_probs).max()), 4),
        }
        scores = np.array([c.reasoning_score for c in held_pred], dtype=np.float64)
        truth = np.array([it.aux[0] if it.aux else np.nan for it in held])
        ok = np.isfinite(truth)
        card["reasoning_score"] = {
            "target": "share of the 29 recorded models answering wrong",
            "heldout_pearson": round(float(np.corrcoef(scores[ok], truth[ok])[0, 1]), 4),
        }
        card["other_metrics"] = {
            "mmlu_pro_validation": _accuracy(clf, [it.fixed_text(seed) for it in val], [it.label for it in val]),
            "gsm8k_unseen_as_math": _accuracy(clf, gsm := _unseen_gsm8k(seed), ["math"] * len(gsm)),
        }
    out.mkdir(parents=True, exist_ok=True)
    keep = {k: np.asarray(v, dtype=np.float32) for k, v in adapter.items()}
    np.savez_compressed(out / ADAPTER_ASSET.name, allow_pickle=False, **keep)
    card["sizes"] = {"adapter_npz_bytes": (out / ADAPTER_ASSET.name).stat().st_size}
    card["build_seconds"] = round(time.monotonic() - start, 1)
    (out / CARD_ASSET.name).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s and %s", out / ADAPTER_ASSET.name, out / CARD_ASSET.name)
    return card


def heldout_items(seed: int = DEFAULT_SEED) -> list[Item]:
    """The MMLU-Pro held-out questions (for tests and evaluation)."""
    items, _ = load_items(seed)
    return [it for it in items if it.source == "mmlu_pro" and is_heldout(seed, normalise(it.question))]
