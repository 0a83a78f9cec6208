"""The linear classifier head (numpy) and the classification metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Hyper:
    """Fine-tuning hyper-parameters (LoRA on the encoder, linear heads); recorded in the card."""

    rank: int = 8
    alpha: float = 16.0
    epochs: float = 2.0
    batch_size: int = 32
    max_length: int = 96  # training window; the router uses the encoder's own (128)
    lr_lora: float = 1e-3
    lr_other: float = 3e-4  # biases and layer norms
    lr_head: float = 3e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.05
    aux_weight: float = 0.3
    warmup: float = 0.06
    threads: int = 2


@dataclass(frozen=True)
class LinearHead:
    """probs = softmax(x @ weight + bias) on L2-normalised sentence embeddings x [B, D]."""

    weight: F32  # [D, K]
    bias: F32  # [K]

    def logits(self, x: F32) -> F32:
        return np.asarray(x @ self.weight + self.bias, dtype=np.float32)

    def proba(self, x: F32) -> F32:
        return softmax(self.logits(x))


def softmax(z: npt.NDArray[Any]) -> F32:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def confusion(y_true: I64, y_pred: I64, n_classes: int) -> I64:
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _prf(cm: I64) -> tuple[F64, F64, F64]:
    tp = np.diag(cm).astype(np.float64)
    pred_n = cm.sum(axis=0).astype(np.float64)
    true_n = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def macro_f1(y_true: I64, y_pred: I64, n_classes: int) -> float:
    cm = confusion(y_true, y_pred, n_classes)
    present = cm.sum(axis=1) > 0
    return float(_prf(cm)[2][present].mean())


def evaluate(y_true: I64, y_pred: I64, labels: Sequence[str], top: int = 10) -> dict[str, Any]:
    """Accuracy, macro-F1, per-category precision/recall/F1/n and the most frequent confusions."""
    k = len(labels)
    cm = confusion(y_true, y_pred, k)
    precision, recall, f1 = _prf(cm)
    present = cm.sum(axis=1) > 0
    per_category = {
        labels[i]: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "n": int(cm[i].sum()),
        }
        for i in range(k)
    }
    off = [(int(cm[i, j]), labels[i], labels[j]) for i in range(k) for j in range(k) if i != j and cm[i, j]]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    return {
        "heldout_accuracy": round(float(np.diag(cm).sum() / max(len(y_true), 1)), 4),
        "heldout_macro_f1": round(float(f1[present].mean()), 4),
        "per_category": per_category,
        "top_confusions": [[t, p, c] for c, t, p in off[:top]],
    }
