"""Fitting the lexical first tier (``workers.classifier.lexical``) and choosing where it decides.

The head is an L2-regularised softmax regression over the sparse features, fitted with scipy's L-BFGS on the
training questions in three renderings (as the encoder was fine-tuned). ``threshold`` and ``mix`` are chosen on
the validation slice, given the encoder's probabilities there (``choose``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.sparse.linalg import lsqr

from workers.classifier.lexical import F32, I64, LexicalFeatures, LexicalTier, Sparse, decided_by, mixed_logits

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MIXES = (0.0, 0.2, 0.35)
L2 = 1e-6
ITER_LIM = 300  # lsqr's, for the score
MAX_ITER = 100  # validation accuracy and the chosen share are flat beyond it (0.7973 at 100, 0.7993 at 150)


def _csr(x: Sparse) -> sp.csr_matrix:
    return sp.csr_matrix((x.values, x.indices, x.indptr), shape=(x.n_rows, x.n_cols))


def fit_head(
    x: Sparse, y: I64, n_classes: int, l2: float = L2, max_iter: int = MAX_ITER, balanced: bool = True
) -> tuple[F32, F32]:
    """(weight [F, K], bias [K]) minimising mean cross-entropy + l2 * ||W||^2; ``balanced``: each class weighs
    the same in the mean (computer science has a fifth of maths' training questions: the 205 replay ones are
    held back, and a tier fitted without weights was surest, and most often wrong, where the encoder is right)."""
    m = _csr(x)
    d, k = m.shape[1], n_classes
    counts = np.bincount(y, minlength=k).astype(np.float64)
    row = len(y) / (k * counts[y]) if balanced else np.ones(len(y))
    onehot = np.zeros((len(y), k))
    onehot[np.arange(len(y)), y] = row

    def f(p: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w, b = p[: d * k].reshape(d, k), p[d * k :]
        z = m @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = float(-(onehot * logp).sum() / len(y) + l2 * (w * w).sum())
        g = (np.exp(logp) * row[:, None] - onehot) / len(y)
        return loss, np.concatenate([(m.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)])

    r = minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return r.x[: d * k].reshape(d, k).astype(np.float32), r.x[d * k :].astype(np.float32)


def fit_score(x: Sparse, target: npt.NDArray[np.float64], damp: float = 0.05) -> tuple[F32, float]:
    """Ridge regression (``lsqr`` with ``damp``) of the reasoning-score target on the features: (w [F, 1], b)."""
    mean = float(target.mean())
    w = lsqr(_csr(x), target - mean, damp=damp, atol=1e-6, btol=1e-6, iter_lim=ITER_LIM)[0]
    return w.astype(np.float32)[:, None], mean


def quantile_map(raw: npt.NDArray[np.floating], encoder: npt.NDArray[np.floating], n: int = 101) -> F32:
    """[2, n]: quantiles of the tier's raw scores and of the encoder's, on the same (validation) prompts."""
    q = np.linspace(0, 1, n)
    xs = np.maximum.accumulate(np.quantile(raw, q))
    return np.stack([xs, np.quantile(encoder, q)]).astype(np.float32)


@dataclass(frozen=True)
class Choice:
    threshold: float  # the tier decides a prompt whose top probability reaches it
    mix: float
    share: float  # of the validation prompts the tier decides
    accuracy: float  # of the cascade on validation
    encoder_accuracy: float


def cascade(p_lex: F32, p_enc: F32, threshold: float, mix: float) -> tuple[I64, npt.NDArray[np.bool_]]:
    """(predicted class, decided by the tier) of a cascade, given both tiers' probabilities, the tier's threshold
    and the mix."""
    decided = decided_by(p_lex, threshold)
    return np.where(decided, p_lex.argmax(axis=1), mixed_logits(p_enc, p_lex, mix).argmax(axis=1)), decided


def choose(p_lex: F32, p_enc: F32, y: I64) -> Choice:
    """The validation slice's choice of (threshold, mix): among the candidates whose cascade is at least as
    accurate as the encoder alone, the one where the tier decides the most prompts (ties: the more accurate);
    never deciding (threshold 2.0) when none keeps accuracy. One threshold for every class: a per-class one
    (the lowest keeping the rule within each class's ~100 validation prompts) decided 71.6% of validation at
    0.8605 but measured 0.8652 on held-out against this choice's 0.8692, the optimism of 14 small choices."""
    enc = float((p_enc.argmax(axis=1) == y).mean())
    best = Choice(2.0, 0.0, 0.0, enc, enc)
    for t in THRESHOLDS:
        for mix in MIXES:
            pred, decided = cascade(p_lex, p_enc, t, mix)
            c = Choice(t, mix, float(decided.mean()), float((pred == y).mean()), enc)
            if c.accuracy >= enc and (c.share, c.accuracy) > (best.share, best.accuracy):
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
    score: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
) -> tuple[LexicalTier, Choice]:
    """Fit the tier on the training prompts and place it on the validation slice.

    ``score``: (the encoder's reasoning scores of the first training prompts, its scores on validation): a
    ridge regression on those prompts distils the former (the encoder's own score generalises better than the
    29-model error rate it was trained on: held-out Pearson with that rate 0.50 against 0.41 when fitted to the
    rate directly), and is quantile-mapped onto the encoder's scale on validation, so that a calibrated
    threshold keeps its share."""
    features = LexicalFeatures.fit_idf(train_seqs, vocab)
    x = features.matrix(train_seqs)
    w, b = fit_head(x, train_y, n_classes)
    x_val = features.matrix(val_seqs)
    sw, sb, smap = None, 0.0, None
    if score is not None:
        target, val_scores = score
        sw, sb = fit_score(x.head(len(target)), target)
        smap = quantile_map(x_val.matmul(sw)[:, 0] + sb, val_scores)
    tier = LexicalTier(features, w, b, 2.0, 0.0)  # decides nothing until placed
    choice = choose(tier.predict(val_seqs)[0], val_encoder, val_y)
    return LexicalTier(features, w, b, choice.threshold, choice.mix, sw, sb, smap), choice
