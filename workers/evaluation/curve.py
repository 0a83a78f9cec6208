"""The accuracy/cost curve of routing between a cheap and an expensive arm on recorded outcomes (pure numpy).

A router ranks prompts by a priority (higher: send to the expensive arm first); at share ``s`` the top
``round(s * N)`` prompts go to the expensive arm, ties broken by position (stable, so a constant priority
routes the first prompts). Accuracy is the mean correctness of the chosen arm; cost is the share sent to the
expensive arm, or tokens when both arms have them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
SHARES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))


def top_share(priority: Sequence[float] | Floats, share: float) -> npt.NDArray[np.bool_]:
    """The mask of the ``round(share * N)`` highest priorities (ties: the earlier prompt first)."""
    p = np.asarray(priority, dtype=np.float64)
    k = round(min(max(share, 0.0), 1.0) * len(p))
    order = np.argsort(-p, kind="stable")
    mask = np.zeros(len(p), dtype=bool)
    mask[order[:k]] = True
    return mask


def accuracy_at(priority: Sequence[float] | Floats, cheap: Floats, expensive: Floats, share: float) -> float:
    """Mean correctness when the top ``share`` of prompts by priority go to the expensive arm."""
    if len(cheap) == 0:
        return float("nan")
    mask = top_share(priority, share)
    return float(np.where(mask, expensive, cheap).mean())


def mean_accuracy(
    priority: Sequence[float] | Floats, cheap: Floats, expensive: Floats, shares: Sequence[float] = SHARES
) -> float:
    """Accuracy averaged over ``shares`` (10..90%): one number for a ranking, the area under its curve."""
    return float(np.mean([accuracy_at(priority, cheap, expensive, s) for s in shares]))


CURVE_SHARES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
TARGET_OF_EXPENSIVE = 0.95
RESAMPLES = 1000
CELLS_PER_CHUNK = 2_000_000  # resamples x records held at once (a few arrays of this many float64)
EPS = 1e-9


def ranking(priority: Sequence[float] | Floats) -> npt.NDArray[np.intp]:
    """Positions by descending priority, ties by position (as `top_share`); NaN ranks last."""
    p = np.nan_to_num(np.asarray(priority, dtype=np.float64), nan=-np.inf)
    return np.argsort(-p, kind="stable")


def oracle_ranking(cheap: Floats, expensive: Floats, extra: Floats) -> npt.NDArray[np.intp]:
    """The oracle's order: first the prompts where the expensive arm gains and costs no more (largest gain
    first), then those where it costs less and loses nothing, then the other gains by extra cost per unit of
    gain; prompts where it does not gain come last, and `oracle_takes` leaves them out."""
    d = expensive - cheap
    group = np.select([(d > 0) & (extra <= 0), (d == 0) & (extra < 0), d > 0], [0, 1, 2], 3)
    within = np.select([group == 0, group == 1, group == 2], [-d, extra, extra / np.where(d > 0, d, 1.0)], 0.0)
    return np.lexsort((np.arange(len(d)), within, group))


def oracle_takes(cheap: Floats, expensive: Floats, extra: Floats) -> Floats:
    """1 where the oracle may send a prompt to the expensive arm (it gains, or costs less and loses nothing)."""
    d = expensive - cheap
    takes: Floats = ((d > 0) | ((d == 0) & (extra < 0))).astype(np.float64)
    return takes


class _Prefix:
    """Cumulative sums of one ranking under a batch of resample weights ``w`` [b, n] (counts per record)."""

    def __init__(
        self, order: npt.NDArray[np.intp], w: Floats, d: Floats, x: Floats, base_acc: Floats, base_cost: Floats
    ):
        self.n = w.shape[1]
        self.rows = np.arange(w.shape[0])
        self.w = w[:, order]
        self.d = d[order]
        self.x = x[order]
        self.count = np.cumsum(self.w, axis=1)
        self.gain = np.cumsum(self.w * self.d, axis=1) / self.n
        self.extra = np.cumsum(self.w * self.x, axis=1) / self.n
        self.base_acc = base_acc
        self.base_cost = base_cost

    def _prev(self, a: Floats, j: npt.NDArray[np.intp]) -> Floats:
        return np.where(j > 0, a[self.rows, np.maximum(j - 1, 0)], 0.0)

    def _finish(self, j: npt.NDArray[np.intp], m: Floats) -> tuple[Floats, Floats, Floats]:
        """(accuracy, cost, share) after the records before ``j`` and ``m`` copies of record ``j``."""
        jj = np.minimum(j, self.n - 1)
        acc = self.base_acc + self._prev(self.gain, j) + m * self.d[jj] / self.n
        cost = self.base_cost + self._prev(self.extra, j) + m * self.x[jj] / self.n
        share = (self._prev(self.count, j) + m) / self.n
        return acc, cost, share

    def at_share(self, share: float) -> tuple[Floats, Floats]:
        """(accuracy, cost) with the top round(share * n) resampled prompts on the expensive arm."""
        k = float(round(share * self.n))
        j = np.array([np.searchsorted(row, k - EPS) for row in self.count], dtype=np.intp)
        acc, cost, _ = self._finish(j, k - self._prev(self.count, j))
        return acc, cost

    def at_cost(self, budget: Floats) -> Floats:
        """Accuracy of the last prefix whose cost is within ``budget`` (one per resample), with as many copies
        of the next record as still fit; NaN where no prefix fits. Meant for the oracle, whose accuracy never
        falls along its prefix (it takes no record that loses)."""
        costs = self.base_cost[:, None] + self.extra
        fits = costs <= budget[:, None] + EPS
        any_fit = fits.any(axis=1)
        last = np.where(any_fit, self.n - 1 - np.argmax(fits[:, ::-1], axis=1), -1)
        j = (last + 1).astype(np.intp)  # the records before j are taken
        empty_fits = self.base_cost <= budget + EPS
        jj = np.minimum(j, self.n - 1)
        room = budget - (self.base_cost + self._prev(self.extra, j))
        xj = self.x[jj]
        m = np.where(xj > 0, np.floor(room * self.n / np.where(xj > 0, xj, 1.0) + EPS), 0.0)
        m = np.where(j < self.n, np.clip(m, 0.0, self.w[self.rows, jj]), 0.0)
        acc = self._finish(j, m)[0]
        return np.where(any_fit | empty_fits, acc, np.nan)

    def to_reach(self, target: Floats) -> tuple[Floats, Floats]:
        """(share, cost) of the shortest prefix reaching accuracy ``target``; NaN where none does."""
        acc = self.base_acc[:, None] + self.gain
        hit = acc >= target[:, None] - EPS
        reached = hit.any(axis=1) | (self.base_acc >= target - EPS)
        j = np.where(self.base_acc >= target - EPS, 0, np.argmax(hit, axis=1)).astype(np.intp)
        before = self.base_acc + self._prev(self.gain, j)
        dj = self.d[j]
        need = np.where(dj > 0, np.ceil((target - before) * self.n / np.where(dj > 0, dj, 1.0) - EPS), 0.0)
        m = np.clip(need, 0.0, self.w[self.rows, j])
        _, cost, share = self._finish(j, m)
        return np.where(reached, share, np.nan), np.where(reached, cost, np.nan)


def _batch(
    w: Floats, orders: dict[str, npt.NDArray[np.intp]], c: Floats, e: Floats, ct: Floats, x: Floats
) -> dict[str, Floats]:
    """Every statistic of the report for a batch of resample weights ``w`` [b, n]: name -> [b] values."""
    n = w.shape[1]
    d = e - c
    base_acc, base_cost = w @ c / n, w @ ct / n
    mean_d, mean_x = w @ d / n, w @ x / n
    out: dict[str, Floats] = {
        "cheap.accuracy": base_acc,
        "cheap.cost": base_cost,
        "expensive.accuracy": base_acc + mean_d,
        "expensive.cost": base_cost + mean_x,
    }
    router = _Prefix(orders["router"], w, d, x, base_acc, base_cost)
    # the oracle sends a prompt to the expensive arm only where it gains: the best accuracy within a cost
    oracle = _Prefix(orders["oracle"], w * oracle_takes(c, e, x), d, x, base_acc, base_cost)
    for s in CURVE_SHARES:
        acc, cost = router.at_share(s)
        # random routing at the router's cost: the exact mean over random subsets of that share
        moves = np.abs(mean_x) > EPS
        rshare = np.clip((cost - base_cost) / np.where(moves, mean_x, 1.0), 0.0, 1.0)
        rshare = np.where(moves, rshare, round(s * n) / n)
        rnd = base_acc + rshare * mean_d
        out[f"{s}.router.accuracy"], out[f"{s}.router.cost"] = acc, cost
        out[f"{s}.random.accuracy"] = rnd
        out[f"{s}.oracle.accuracy"] = oracle.at_cost(cost)
        out[f"{s}.router_minus_random"] = acc - rnd
    target = TARGET_OF_EXPENSIVE * (base_acc + mean_d)
    for name, prefix in (("router", router), ("oracle", oracle)):
        out[f"reach.{name}.share"], out[f"reach.{name}.cost"] = prefix.to_reach(target)
    need = np.where(mean_d > 0, (target - base_acc) / np.where(mean_d > 0, mean_d, 1.0), np.inf)
    need = np.where(base_acc >= target - EPS, 0.0, need)
    ok = need <= 1.0 + EPS
    out["reach.random.share"] = np.where(ok, need, np.nan)
    out["reach.random.cost"] = np.where(ok, base_cost + need * mean_x, np.nan)
    return out


def _stat(point: float, samples: Floats, digits: int) -> dict[str, object]:
    finite = samples[np.isfinite(samples)]
    ci = [round(float(v), digits) for v in np.percentile(finite, [2.5, 97.5])] if len(finite) else None
    out: dict[str, object] = {"value": None if not np.isfinite(point) else round(point, digits), "ci95": ci}
    if len(finite) < len(samples):
        out["resamples_reached"] = round(len(finite) / len(samples), 4)
    return out


def report(
    priority: Sequence[float] | Floats,
    cheap: Floats,
    expensive: Floats,
    cheap_tokens: Floats | None = None,
    expensive_tokens: Floats | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, object]:
    """The accuracy/cost report of a ranking vs random and oracle, with paired bootstrap 95% intervals.

    Cost is the share sent to the expensive arm, or mean tokens per prompt when both token arrays are
    given. Random and oracle are taken at the router's cost (per resample); every statistic is computed on
    the same record resamples (``resamples`` of them, seeded), intervals are percentile intervals.
    """
    c, e = np.asarray(cheap, dtype=np.float64), np.asarray(expensive, dtype=np.float64)
    n = len(c)
    if n == 0 or len(e) != n or len(priority) != n:
        raise ValueError("priority, cheap and expensive must be non-empty and of one length")
    tokens = cheap_tokens is not None and expensive_tokens is not None
    ct = np.asarray(cheap_tokens, dtype=np.float64) if tokens else np.zeros(n)
    x = np.asarray(expensive_tokens, dtype=np.float64) - ct if tokens else np.ones(n)
    orders = {"router": ranking(priority), "oracle": oracle_ranking(c, e, x)}
    point = {k: float(v[0]) for k, v in _batch(np.ones((1, n)), orders, c, e, ct, x).items()}
    rng = np.random.default_rng(seed)
    chunk = max(1, CELLS_PER_CHUNK // n)
    parts: list[dict[str, Floats]] = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        w = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        parts.append(_batch(w, orders, c, e, ct, x))
    samples = {k: np.concatenate([p[k] for p in parts]) if parts else np.array([point[k]]) for k in point}
    cd = 1 if tokens else 4

    def st(key: str, digits: int = 4) -> dict[str, object]:
        return _stat(point[key], samples[key], digits)

    def at(s: float) -> dict[str, object]:
        return {
            "share": s,
            "router": {"accuracy": st(f"{s}.router.accuracy"), "cost": st(f"{s}.router.cost", cd)},
            "random": {"accuracy": st(f"{s}.random.accuracy")},
            "oracle": {"accuracy": st(f"{s}.oracle.accuracy")},
            "router_minus_random": st(f"{s}.router_minus_random"),
        }

    return {
        "n": n,
        "cost": "mean tokens per prompt" if tokens else "share of prompts sent to the expensive arm (no token counts)",
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "percentile 95%, records resampled, paired"},
        "arms": {
            arm: {"accuracy": st(f"{arm}.accuracy"), "cost": st(f"{arm}.cost", cd)} for arm in ("cheap", "expensive")
        },
        "curve": [at(s) for s in CURVE_SHARES],
        "at_shares": [at(s) for s in SHARES],
        "cost_to_95": {
            "target_accuracy": round(TARGET_OF_EXPENSIVE * point["expensive.accuracy"], 4),
            **{
                p: {"share": st(f"reach.{p}.share"), "cost": st(f"reach.{p}.cost", cd)}
                for p in ("router", "random", "oracle")
            },
        },
    }
