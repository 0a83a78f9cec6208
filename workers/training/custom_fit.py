"""Choosing the custom classifier's head and neighbour vote on the validation slice (numpy only).

The head is a class-balanced multinomial logistic regression (``workers.classifier.softmax_fit``) on the
training slice's embeddings; its L2 strength is the one of ``L2_GRID`` with the best validation macro-F1
(ties: the stronger penalty). It is not refitted on train + validation: the validation slice stays unseen
by the head so that it can also choose the vote's weight over the training bank (``VOTE_WEIGHTS``, 0 = no
vote; ties: the smaller weight). Without validation examples the defaults are used and the card says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from workers.classifier.head import LinearHead, macro_f1
from workers.classifier.knn import VoteParams
from workers.classifier.softmax_fit import F32, I64, balanced_weights, fit_softmax, vote_mix

L2_GRID = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)  # strongest first: each fit warm-starts the next
DEFAULT_L2 = 1e-3
VOTE_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
VOTE = VoteParams()  # k and temperature as the shipped classifier's; the weight is chosen here


def _score(y: I64, pred: I64, k: int) -> tuple[float, float]:
    return round(macro_f1(y, pred, k), 4), round(float((pred == y).mean()), 4)


def choose_head(x_tr: F32, y_tr: I64, x_val: F32, y_val: I64, k: int) -> tuple[LinearHead, float, list[dict[str, Any]]]:
    """(head, chosen L2, one record per grid value: l2, validation macro-F1 and accuracy, iterations)."""
    weights = balanced_weights(y_tr, k)
    grid: list[dict[str, Any]] = []
    heads: dict[float, LinearHead] = {}
    init: LinearHead | None = None
    for l2 in L2_GRID if len(y_val) else (DEFAULT_L2,):
        fit = fit_softmax(x_tr, y_tr, k, l2, weights, init=init)
        init = heads[l2] = fit.head
        row: dict[str, Any] = {"l2": l2, "iterations": fit.iterations, "grad_max": float(f"{fit.grad_norm:.2g}")}
        if len(y_val):
            row["val_macro_f1"], row["val_accuracy"] = _score(y_val, fit.head.logits(x_val).argmax(1), k)
        grid.append(row)
    if not len(y_val):
        return heads[DEFAULT_L2], DEFAULT_L2, grid
    best = max(grid, key=lambda r: (r["val_macro_f1"], r["val_accuracy"], r["l2"]))
    return heads[best["l2"]], float(best["l2"]), grid


def choose_vote(
    head: LinearHead, bank: F32, bank_y: I64, x_val: F32, y_val: I64, k: int
) -> tuple[VoteParams, list[dict[str, Any]]]:
    """(the vote's parameters, weight 0 when it does not help on validation; one record per weight)."""
    if not len(y_val) or len(bank) < VOTE.k:
        return replace(VOTE, weight=0.0), []
    logits = head.logits(x_val)
    grid: list[dict[str, Any]] = []
    for w in VOTE_WEIGHTS:
        params = replace(VOTE, weight=w)
        pred = vote_mix(logits, x_val, bank, bank_y, k, params).argmax(1)
        f1, acc = _score(y_val, pred, k)
        grid.append({"weight": w, "val_macro_f1": f1, "val_accuracy": acc})
    best = max(grid, key=lambda r: (r["val_macro_f1"], r["val_accuracy"], -r["weight"]))
    return replace(VOTE, weight=float(best["weight"])), grid


def as_index(labels: list[str], names: list[str]) -> I64:
    return np.array([labels.index(n) for n in names], dtype=np.int64)
