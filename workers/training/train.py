"""``thinkroute train``: fine-tune the classifier and write the shipped adapter and its card.

Writes ``workers/classifier/assets/adapter.npz`` and ``classifier_card.json`` (or another ``out_dir``); the
runtime artefact is composed from them without torch (``workers.classifier.build``). Held-out metrics are
measured on the composed ONNX model through ``Classifier`` (the router's code), not on torch.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workers.classifier.build import (
    ADAPTER_ASSET,
    CARD_ASSET,
    DEFAULT_SEED,
    TOKENIZER_ASSET,
    float_probs,
    write_artifact,
)
from workers.classifier.corpus import AUX_TARGETS, load_items
from workers.classifier.graph import ENCODER_PACKAGE, ENCODER_VERSION
from workers.classifier.head import Hyper
from workers.classifier.splits import GSM8K_SAMPLE, HELDOUT_FRACTION, VALIDATION_FRACTION
from workers.classifier.tokens import DEFAULT_MAX_LENGTH, HEAD_FRACTION, TextEncoder
from workers.classifier.weights import load_adapter
from workers.evaluation.heldout import heldout_items, measure

log = logging.getLogger(__name__)

N_REFERENCE = 24


def train_classifier(
    out_dir: Path | None = None, seed: int = DEFAULT_SEED, epochs: float = 2.0, resume: Path | None = None
) -> dict[str, Any]:
    """Train, compose, measure; write adapter.npz + classifier_card.json into ``out_dir`` (the assets).

    ``resume``: an adapter saved by an earlier run of the same recipe: skips the fitting (~25 min) and
    needs no torch; the artefact is composed and measured again.
    """
    start = time.monotonic()
    out = Path(out_dir) if out_dir is not None else ADAPTER_ASSET.parent
    items, counts = load_items(seed)
    labels = sorted({it.label for it in items if it.source == "mmlu_pro"})
    fit = [it for it in items if it.side == "train"]
    aux = np.array([it.aux for it in fit if it.aux is not None], dtype=np.float64)
    norm = tuple((float(aux[:, i].mean()), float(aux[:, i].std())) for i in range(aux.shape[1]))
    tokenizer = TextEncoder.from_file(TOKENIZER_ASSET, DEFAULT_MAX_LENGTH)
    hp = Hyper(epochs=epochs)
    model = None
    if resume is None:
        from workers.training.finetune import export_heads, train

        model = train(fit, labels, tokenizer, seed, hp, norm)
        adapter: dict[str, Any] = {**model.adapter(), **export_heads(model)}
    else:
        adapter = {k: v for k, v in load_adapter(resume).items() if not k.startswith("reference/")}
    train_s = time.monotonic() - start
    mean0, sd0 = norm[0]  # reasoning score = predicted error rate of the 29 recorded models, in [0, 1] units
    adapter["score/W"] = (adapter["aux/W"][:, :1] * sd0).astype(np.float32)
    adapter["score/b"] = (adapter["aux/b"][:1] * sd0 + mean0).astype(np.float32)

    held = heldout_items(seed, items)
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
        fp32, _ = write_artifact(Path(tmp), adapter, card, "train-preview", seed, progress=True)
        adapter["reference/probs"] = float_probs(fp32, ref_texts, labels)
        card.update(measure(Path(tmp), seed, items))
        built = json.loads((Path(tmp) / "card.json").read_text(encoding="utf-8"))
        card["runtime"], card["neighbour_vote"] = built["runtime"], built["neighbour_vote"]
        if model is not None:
            from workers.training.finetune import predict

            torch_probs = predict(model, tokenizer, held_texts)["probs"]
            onnx_probs = float_probs(fp32, held_texts, labels)
            y = np.array([labels.index(it.label) for it in held])
            card["onnx_vs_torch"] = {
                "torch_heldout_accuracy": round(float((torch_probs.argmax(1) == y).mean()), 4),
                "onnx_fp32_max_abs_prob_diff": round(float(np.abs(onnx_probs - torch_probs).max()), 4),
                "runtime_heldout_accuracy": card["metrics"]["heldout_accuracy"],
            }
    out.mkdir(parents=True, exist_ok=True)
    keep = {k: np.asarray(v, dtype=np.float32) for k, v in adapter.items()}
    np.savez_compressed(out / ADAPTER_ASSET.name, allow_pickle=False, **keep)
    card["sizes"] = {"adapter_npz_bytes": (out / ADAPTER_ASSET.name).stat().st_size}
    card["build_seconds"] = round(time.monotonic() - start, 1)
    (out / CARD_ASSET.name).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s and %s", out / ADAPTER_ASSET.name, out / CARD_ASSET.name)
    return card
