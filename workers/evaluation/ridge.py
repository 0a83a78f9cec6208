"""Ridge regression and the held-out statistics ``thinkroute fit`` reports (pure numpy: no torch, no sklearn).

* ``fit_ridge``: closed form on standardised features (centre and scale from the training rows only), the
  intercept unpenalised; ``choose_lambda`` picks the penalty by inner cross-validation (mean squared error,
  folds by a hash of each prompt, so duplicates stay in one fold), one SVD per inner fold for every penalty.
* ``mean_accuracy_fast``: ``workers.evaluation.curve.mean_accuracy`` from one sort and a cumulative sum
  (identical values, ties included), so a bootstrap of a thousand resamples takes seconds.
* ``paired_bootstrap``: new ranking vs current ranking vs random at equal cost on the same resampled
  prompts; the difference's one-sided 95% lower bound is what ``fit`` refuses on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.evaluation.curve import SHARES

F = npt.NDArray[np.float64]
I = npt.NDArray[np.int64]  # noqa: E741

LAMBDAS: tuple[float, ...] = tuple(float(10.0**k) for k in np.arange(-1.0, 7.01, 0.5))
INNER_FOLDS = 4
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Linear:
    """prediction = bias + weights . ((x - center) / scale)"""

    center: F
    scale: F
    weights: F
    bias: float
    lam: float

    def predict(self, x: F) -> F:
        return np.asarray(self.bias + ((x - self.center) / self.scale) @ self.weights, dtype=np.float64)


def fold_of(keys: Sequence[str], k: int, seed: int, salt: str = "fold") -> I:
    """A fold in 0..k-1 per key, from a hash of (seed, salt, key): equal keys share a fold."""
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") % k
    return out


def _standardise(x: F) -> tuple[F, F, F]:
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return (x - center) / scale, center, scale


def fit_ridge(x: F, y: F, lam: float) -> Linear:
    z, center, scale = _standardise(x)
    bias = float(y.mean())
    gram = z.T @ z + lam * np.eye(z.shape[1])
    weights = np.asarray(np.linalg.solve(gram, z.T @ (y - bias)), dtype=np.float64)
    return Linear(center, scale, weights, bias, lam)


def choose_lambda(
    x: F, y: F, keys: Sequence[str], seed: int, inner: int = INNER_FOLDS, lambdas: Sequence[float] = LAMBDAS
) -> float:
    """The penalty with the lowest inner cross-validated squared error (the largest one on a tie)."""
    fold = fold_of(keys, inner, seed, salt="inner")
    sse = np.zeros(len(lambdas))
    for f in range(inner):
        tr, te = fold != f, fold == f
        if tr.sum() < 2 or te.sum() == 0:
            continue
        z, center, scale = _standardise(x[tr])
        bias = y[tr].mean()
        u, s, vt = np.linalg.svd(z, full_matrices=False)
        uty = u.T @ (y[tr] - bias)
        zte = (x[te] - center) / scale @ vt.T
        for j, lam in enumerate(lambdas):
            pred = bias + zte @ (s / (s**2 + lam) * uty)
            sse[j] += float(((pred - y[te]) ** 2).sum())
    best = float(sse.min())
    return float(max(lam for lam, e in zip(lambdas, sse, strict=True) if e <= best * (1 + 1e-12)))


def fit_cv(x: F, y: F, keys: Sequence[str], seed: int) -> Linear:
    """Ridge with its penalty chosen by inner cross-validation on these rows only."""
    return fit_ridge(x, y, choose_lambda(x, y, keys, seed))


def mean_accuracy_fast(priority: F, cheap: F, expensive: F, shares: Sequence[float] = SHARES) -> float:
    """Equal to ``curve.mean_accuracy`` (stable ties: the earlier prompt first)."""
    n = len(cheap)
    if n == 0:
        return float("nan")
    order = np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable")
    gains = np.concatenate([[0.0], np.cumsum((expensive - cheap)[order])])
    base = float(cheap.sum())
    return float(np.mean([(base + gains[round(min(max(s, 0.0), 1.0) * n)]) / n for s in shares]))


def random_mean_accuracy(cheap: F, expensive: F, shares: Sequence[float] = SHARES) -> float:
    """Expected accuracy of a random ranking at the same shares: the arms mixed in proportion."""
    n = len(cheap)
    if n == 0:
        return float("nan")
    ks = [round(min(max(s, 0.0), 1.0) * n) / n for s in shares]
    return float(np.mean([(1 - k) * cheap.mean() + k * expensive.mean() for k in ks]))


def auc(score: F, label: npt.NDArray[np.bool_]) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney); nan with one class only."""
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]  # tied scores share their mean rank
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _interval(values: F) -> list[float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return [float("nan"), float("nan")]
    return [round(float(np.quantile(v, 0.025)), 4), round(float(np.quantile(v, 0.975)), 4)]


def paired_bootstrap(new: F, current: F, cheap: F, expensive: F, seed: int, n_boot: int = BOOTSTRAP) -> dict[str, Any]:
    """Held-out comparison with paired bootstrap 95% intervals (the same resampled prompts for every ranking).

    ``diff_lower_95`` is the one-sided 95% lower bound (5th percentile) of mean accuracy(new) - (current).
    """
    label = (expensive - cheap) > 0  # the expensive arm right where the cheap one is wrong
    rng = np.random.default_rng(seed)
    n = len(cheap)
    stats = np.full((n_boot, 6), np.nan)
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        c, e = cheap[i], expensive[i]
        a_new, a_cur = mean_accuracy_fast(new[i], c, e), mean_accuracy_fast(current[i], c, e)
        a_rand = random_mean_accuracy(c, e)
        stats[b] = [a_new, a_cur, a_rand, a_new - a_cur, auc(new[i], label[i]), auc(current[i], label[i])]
    point = [
        mean_accuracy_fast(new, cheap, expensive),
        mean_accuracy_fast(current, cheap, expensive),
        random_mean_accuracy(cheap, expensive),
    ]
    names = ("new", "current", "random")
    diffs = stats[:, 3]
    return {
        "n": n,
        "shares": list(SHARES),
        "mean_accuracy": {k: round(v, 4) for k, v in zip(names, point, strict=True)},
        "mean_accuracy_ci95": {k: _interval(stats[:, j]) for j, k in enumerate(names)},
        "diff_new_minus_current": round(point[0] - point[1], 4),
        "diff_ci95": _interval(diffs),
        "diff_lower_95": round(float(np.quantile(diffs, 0.05)), 4),
        "auc_gain": {"new": round(auc(new, label), 4), "current": round(auc(current, label), 4)},
        "auc_gain_ci95": {"new": _interval(stats[:, 4]), "current": _interval(stats[:, 5])},
        "positives": int(label.sum()),
        "bootstrap": {"resamples": n_boot, "seed": seed, "paired": True},
    }
