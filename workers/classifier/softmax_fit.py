"""Multinomial logistic regression on sentence embeddings (numpy only), and the neighbour vote's mix.

``fit_softmax`` minimises the class-weighted mean cross-entropy plus ``l2 / 2 * ||W||^2`` (the bias is not
penalised) with Nesterov's accelerated gradient and adaptive restart: the objective is convex and smooth,
its gradient's Lipschitz constant is half the largest eigenvalue of the weighted second moment of the
(centred, bias-augmented) features, so the step needs no line search and the result is deterministic.
The features are centred for conditioning; the centring is folded back into the bias, so the head acts on
the embeddings as they are (``LinearHead``). ``vote_mix`` reproduces the graph's neighbour vote
(``workers.classifier.knn``) in numpy, to choose its weight on a validation slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workers.classifier.head import LinearHead, softmax
from workers.classifier.knn import VoteParams

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FitResult:
    head: LinearHead
    iterations: int
    grad_norm: float  # max |gradient| at the end
    loss: float


def balanced_weights(y: I64, n_classes: int) -> F64:
    """Per-example weights N / (K_present * n_class): each present class weighs the same in the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    per_class = np.divide(len(y), present * counts, out=np.zeros_like(counts), where=counts > 0)
    return per_class[y]


def _loss_grad(z: F64, w: F64, b: F64, onehot: F64, sw: F64, l2: float) -> tuple[float, F64, F64]:
    logits = z @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = float(-(sw * (onehot * logp).sum(axis=1)).sum() + 0.5 * l2 * (w * w).sum())
    r = (np.exp(logp) - onehot) * sw[:, None]
    return loss, z.T @ r + l2 * w, r.sum(axis=0)


def fit_softmax(
    x: F32 | F64,
    y: I64,
    n_classes: int,
    l2: float,
    sample_weight: F64 | None = None,
    tol: float = 1e-6,
    max_iter: int = 20_000,
    init: LinearHead | None = None,
) -> FitResult:
    """The L2-regularised softmax head for embeddings ``x`` [N, D] and labels ``y`` in [0, n_classes)."""
    if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError("x must be [N, D] with one label per row, N > 0")
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    xd = np.asarray(x, dtype=np.float64)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sw = sw / sw.sum()
    mu = sw @ xd
    z = xd - mu
    onehot = np.zeros((len(y), n_classes))
    onehot[np.arange(len(y)), y] = 1.0
    za = np.hstack([z, np.ones((len(z), 1))])
    lipschitz = 0.5 * float(np.linalg.eigvalsh((za * sw[:, None]).T @ za)[-1]) + l2
    step = 1.0 / lipschitz
    if init is not None:  # warm start: the given head in centred coordinates
        w = np.asarray(init.weight, dtype=np.float64).copy()
        b = np.asarray(init.bias, dtype=np.float64) + mu @ w
    else:
        w, b = np.zeros((xd.shape[1], n_classes)), np.zeros(n_classes)
    vw, vb, t = w.copy(), b.copy(), 1.0
    _, gw, gb = _loss_grad(z, vw, vb, onehot, sw, l2)
    iterations, grad, loss = 0, np.inf, np.inf
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        nw, nb = vw - step * gw, vb - step * gb  # a gradient step from the extrapolated point
        loss, ngw, ngb = _loss_grad(z, nw, nb, onehot, sw, l2)
        grad = max(float(np.abs(ngw).max()), float(np.abs(ngb).max()))
        if grad < tol:
            w, b = nw, nb
            break
        # adaptive restart (O'Donoghue & Candes): drop the momentum when it points uphill
        if float(((nw - w) * gw).sum() + ((nb - b) * gb).sum()) > 0:
            t = 1.0
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        vw, vb = nw + beta * (nw - w), nb + beta * (nb - b)
        w, b, t = nw, nb, t_next
        _, gw, gb = _loss_grad(z, vw, vb, onehot, sw, l2)
    head = LinearHead(w.astype(np.float32), (b - mu @ w).astype(np.float32))
    return FitResult(head, iterations, grad, loss)


def vote_mix(logits: F32, queries: F32, bank: F32, bank_labels: I64, n_classes: int, params: VoteParams) -> F32:
    """What the graph's neighbour vote outputs, in numpy: softmax((1-w) log p_head + w log(p_vote + eps))."""
    shifted = np.asarray(logits, dtype=np.float64) - logits.max(axis=1, keepdims=True)
    logp_head = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    if params.weight == 0.0:
        return softmax(logp_head)
    sims = queries @ bank.T
    k = min(params.k, bank.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, axis=1)
    wts = np.exp((s - 1.0) / params.temperature)
    tally = np.zeros((len(queries), n_classes))
    np.add.at(tally, (np.repeat(np.arange(len(queries)), k), bank_labels[top].reshape(-1)), wts.reshape(-1))
    p_vote = tally / tally.sum(axis=1, keepdims=True)
    mixed = (1.0 - params.weight) * logp_head + params.weight * np.log(p_vote + params.eps)
    return softmax(mixed)
