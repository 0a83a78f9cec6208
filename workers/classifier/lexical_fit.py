"""Fitting the lexical first tier (``workers.classifier.lexical``) and choosing where it decides.

The head is an L2-regularised softmax regression over the sparse features, fitted with scipy's L-BFGS on the
training questions in three renderings (as the encoder was fine-tuned). ``threshold`` and ``mix`` are chosen on
the validation slice, given the encoder's probabilities there: among the candidates whose cascade is at least
as accurate as the encoder alone, the one where the tier decides the most prompts (ties: the more accurate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.sparse.linalg import lsqr

from workers.classifier.lexical import F32, I64, LexicalFeatures, LexicalTier, Sparse

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MIXES = (0.0, 0.2, 0.35)
L2 = 1e-6
MAX_ITER = 300


def _csr(x: Sparse) -> sp.csr_matrix:
    return sp.csr_matrix((x.values, x.indices, x.indptr), shape=(x.n_rows, x.n_cols))


def fit_head(x: Sparse, y: I64, n_classes: int, l2: float = L2, max_iter: int = MAX_ITER) -> tuple[F32, F32]:
    """(weight [F, K], bias [K]) minimising mean cross-entropy + l2 * ||W||^2."""
    m = _csr(x)
    d, k = m.shape[1], n_classes
    onehot = np.zeros((len(y), k))
    onehot[np.arange(len(y)), y] = 1.0

    def f(p: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w, b = p[: d * k].reshape(d, k), p[d * k :]
        z = m @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = float(-(onehot * logp).sum() / len(y) + l2 * (w * w).sum())
        g = (np.exp(logp) - onehot) / len(y)
        return loss, np.concatenate([(m.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)])

    r = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return r.x[: d * k].reshape(d, k).astype(np.float32), r.x[d * k :].astype(np.float32)


def fit_score(x: Sparse, target: npt.NDArray[np.float64], damp: float = 0.05) -> tuple[F32, float]:
    """Ridge regression (``lsqr`` with ``damp``) of the reasoning-score target on the features: (w [F, 1], b)."""
    mean = float(target.mean())
    w = lsqr(_csr(x), target - mean, damp=damp, atol=1e-6, btol=1e-6, iter_lim=500)[0]
    return w.astype(np.float32)[:, None], mean


def quantile_map(raw: npt.NDArray[np.floating], encoder: npt.NDArray[np.floating], n: int = 101) -> F32:
    """[2, n]: quantiles of the tier's raw scores and of the encoder's, on the same (validation) prompts."""
    q = np.linspace(0, 1, n)
    xs = np.maximum.accumulate(np.quantile(raw, q))
    return np.stack([xs, np.quantile(encoder, q)]).astype(np.float32)


@dataclass(frozen=True)
class Choice:
    threshold: float
    mix: float
    share: float  # of the validation prompts the tier decides
    accuracy: float  # of the cascade on validation
    encoder_accuracy: float


def cascade(p_lex: F32, p_enc: F32, threshold: float, mix: float) -> tuple[I64, npt.NDArray[np.bool_]]:
    """(predicted class, decided by the tier) of a cascade, given both tiers' probabilities."""
    decided = p_lex.max(axis=1) >= threshold
    z = (1 - mix) * np.log(p_enc + 1e-9) + mix * np.log(p_lex + 1e-9)
    return np.where(decided, p_lex.argmax(axis=1), z.argmax(axis=1)), decided


def choose(p_lex: F32, p_enc: F32, y: I64) -> Choice:
    """The validation slice's choice of (threshold, mix); threshold 2.0 (never decide) when none keeps accuracy."""
    enc = float((p_enc.argmax(axis=1) == y).mean())
    best = Choice(2.0, 0.0, 0.0, enc, enc)
    for t in THRESHOLDS:
        for mix in MIXES:
            pred, decided = cascade(p_lex, p_enc, t, mix)
            acc = float((pred == y).mean())
            c = Choice(t, mix, float(decided.mean()), acc, enc)
            if acc >= enc and (c.share, c.accuracy) > (best.share, best.accuracy):
                best = c
    return best


def train_tier(
    train_seqs: Sequence[Sequence[int]],
    train_y: I64,
    val_seqs: Sequence[Sequence[int]],
    val_y: I64,
    val_encoder: F32,
    vocab: int,
    n_classes: int,
    score: tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> tuple[LexicalTier, Choice]:
    """Fit the tier on the training prompts and place it on the validation slice.

    ``score``: (which training prompts have a target, their targets, the encoder's scores on validation): a
    score head is fitted on those and quantile-mapped onto the encoder's scale on validation."""
    features = LexicalFeatures.fit_idf(train_seqs, vocab)
    x = features.matrix(train_seqs)
    w, b = fit_head(x, train_y, n_classes)
    x_val = features.matrix(val_seqs)
    sw, sb, smap = None, 0.0, None
    if score is not None:
        has, target, val_scores = score
        rows = np.flatnonzero(has)
        sub = Sparse(*_rows(x, rows), x.n_cols)
        sw, sb = fit_score(sub, target)
        smap = quantile_map(x_val.matmul(sw)[:, 0] + sb, val_scores)
    tier = LexicalTier(features, w, b, 2.0, 0.0)
    choice = choose(tier.predict(val_seqs)[0], val_encoder, val_y)
    return LexicalTier(features, w, b, choice.threshold, choice.mix, sw, sb, smap), choice


def _rows(x: Sparse, rows: npt.NDArray[np.int64]) -> tuple[I64, I64, F32]:
    """(indptr, indices, values) of the given rows of ``x``."""
    m = _csr(x)[rows]
    return m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float32)
