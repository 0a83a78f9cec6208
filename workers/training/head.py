"""The classifier head: multinomial logistic regression in numpy (full-batch Adam), and its metrics."""

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

L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


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


def sample_weights(y: I64, n_classes: int, balanced: bool) -> F64:
    """Per-example weights: 1, or ``n / (k * count[class])`` when balanced (mean weight 1)."""
    if not balanced:
        return np.ones(len(y), dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = len(y) / (n_classes * np.maximum(counts, 1.0))
    return np.asarray(per_class[y], dtype=np.float64)


def train_logreg(
    x: F32,
    y: I64,
    n_classes: int,
    l2: float,
    *,
    balanced: bool = False,
    steps: int = 200,
    lr: float = 0.1,
) -> LinearHead:
    """Minimise weighted cross-entropy + l2/2 |W|^2 on standardised features; fold the scaling back.

    Deterministic: zero initialisation, full batch, so no randomness is involved.
    """
    xd = x.astype(np.float64)
    mu = xd.mean(axis=0)
    sd = xd.std(axis=0) + 1e-6
    z = ((xd - mu) / sd).astype(np.float32)
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    w = sample_weights(y, n_classes, balanced)
    w = (w / w.sum()).astype(np.float32)
    weight = np.zeros((x.shape[1], n_classes), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    m_w, v_w = np.zeros_like(weight), np.zeros_like(weight)
    m_b, v_b = np.zeros_like(bias), np.zeros_like(bias)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        logits = z @ weight + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) * w[:, None]
        g_w = z.T @ err + l2 * weight
        g_b = err.sum(axis=0)
        step_lr = np.float32(lr * 0.5 * (1.0 + np.cos(np.pi * (t - 1) / steps)))  # cosine decay
        for param, grad, m, v in ((weight, g_w, m_w, v_w), (bias, g_b, m_b, v_b)):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            m_hat = m / np.float32(1 - beta1**t)
            v_hat = v / np.float32(1 - beta2**t)
            param -= step_lr * m_hat / (np.sqrt(v_hat) + eps)
    folded_w = weight.astype(np.float64) / sd[:, None]
    folded_b = bias.astype(np.float64) - mu @ folded_w
    return LinearHead(folded_w.astype(np.float32), folded_b.astype(np.float32))


def select_l2(
    x_train: F32,
    y_train: I64,
    x_val: F32,
    y_val: I64,
    n_classes: int,
    *,
    balanced: bool,
    grid: Sequence[float] = L2_GRID,
) -> tuple[float, list[dict[str, float]]]:
    """The L2 strength with the best validation accuracy (ties: the stronger one)."""
    trials: list[dict[str, float]] = []
    best_l2, best_acc = grid[0], -1.0
    for l2 in grid:
        head = train_logreg(x_train, y_train, n_classes, l2, balanced=balanced)
        pred = head.logits(x_val).argmax(axis=1)
        acc = float((pred == y_val).mean())
        f1 = macro_f1(y_val, pred, n_classes)
        trials.append({"l2": l2, "val_accuracy": round(acc, 4), "val_macro_f1": round(f1, 4)})
        log.debug("l2=%g: validation accuracy %.4f, macro-F1 %.4f", l2, acc, f1)
        if acc >= best_acc:
            best_l2, best_acc = l2, acc
    return best_l2, trials


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
