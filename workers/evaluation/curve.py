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
