"""``thinkroute fit``: learn the per-prompt gain model from outcome records, and refuse it unless it is better.

Target per record: gain = correct(expensive) - correct(cheap), in [-1, 1]. Records graded by agreement only
(the label-free variant: correct fields of 0/1 from whether the arms agree) give the same target, read the
same way. Records without both arms are skipped (counted in the report).

Features: ``workers.classifier.gain.feature_vector`` of the router's own classification of each prompt
(``signals-v1``, or ``embedding-v1`` with the pooled sentence embedding). Model: ridge regression on
standardised features (``workers.evaluation.ridge``), its penalty chosen by inner cross-validation.

Held-out comparison: K folds (default 5) by a seeded hash of the normalised prompt text (duplicates stay in
one fold); each fold's rows are predicted by a model fitted (penalty chosen too) on the other folds only.
Pooled, the predictions leave out each fold model's intercept (the other folds' mean gain): it does not
order the prompts of its fold, and kept it would rank whole folds against their own outcomes (the other
folds' mean gain is high where this fold's is low), which alone gave an AUC of 0.31 on 205 records.
Over the pooled held-out predictions: mean accuracy over shares 10..90% sent to the expensive arm
(``workers.evaluation.curve.mean_accuracy``) of the new model's priority, of the current policy's priority
(``Policy.priority``: its gain model, else the reasoning score) and of random at equal cost (expected), and
the AUC for "expensive right and cheap wrong"; paired bootstrap 95% intervals (1,000 resamples).

**The refusal test.** One-sided paired bootstrap over the held-out predictions of the difference in mean
accuracy (new - current): the new policy is written only when the 5th percentile of the resampled
differences (its one-sided 95% lower bound) is above 0. Otherwise nothing is written and the command exits 1
with the numbers. The written model is then fitted on all records (penalty by inner CV on all of them).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from schemas.outcomes import OutcomeRecord
from workers.classifier.gain import FeatureSet, GainModel, feature_vector
from workers.classifier.model import Classification
from workers.classifier.splits import normalise
from workers.errors import InvalidInput
from workers.evaluation.calibrate import dump_policy
from workers.evaluation.outcomes import read_outcomes, record_text
from workers.evaluation.ridge import F, fit_cv, fold_of, paired_bootstrap
from workers.router.policy import Policy

FOLDS = 5
SEED = 13


class Labeller(Protocol):
    """What fit needs of the classifier (``workers.classifier.model.Classifier`` is one)."""

    labels: list[str]

    def classify(self, texts: Sequence[str]) -> list[Classification]: ...


def read_records(paths: Sequence[Path]) -> list[OutcomeRecord]:
    """Outcome records of every file (``workers.evaluation.outcomes``: plain, xz or gzip; bad line: exit 2)."""
    return [r for p in paths for r in read_outcomes(p)]


@dataclass(frozen=True)
class Examples:
    """The arrays fit works on: one row per record with both arms."""

    keys: list[str]  # normalised prompt text: the fold key
    x: F
    cheap: F
    expensive: F
    current: F  # the current policy's priority
    skipped: int


def examples(
    records: Sequence[OutcomeRecord],
    classifier: Labeller,
    policy: Policy,
    cheap: str,
    expensive: str,
    features: FeatureSet,
) -> Examples:
    keep = [r for r in records if cheap in r.outcomes and expensive in r.outcomes]
    texts = [record_text(r) for r in keep]
    classes = classifier.classify(texts) if texts else []
    width = 0
    rows = [feature_vector(c, classifier.labels, features) for c in classes]
    if rows:
        width = len(rows[0])
    return Examples(
        keys=[normalise(t) for t in texts],
        x=np.array(rows, dtype=np.float64).reshape(len(rows), width),
        cheap=np.array([r.outcomes[cheap].correct for r in keep], dtype=np.float64),
        expensive=np.array([r.outcomes[expensive].correct for r in keep], dtype=np.float64),
        current=np.array([_or0(policy.priority(c)) for c in classes], dtype=np.float64),
        skipped=len(records) - len(keep),
    )


def _or0(v: float | None) -> float:
    return 0.0 if v is None else float(v)


def held_out_predictions(ex: Examples, folds: int = FOLDS, seed: int = SEED) -> tuple[F, list[float]]:
    """Each row predicted (intercept left out) by a model fitted on the other folds; each fold's penalty."""
    fold = fold_of(ex.keys, folds, seed)
    y = ex.expensive - ex.cheap
    pred = np.zeros(len(y))
    lams: list[float] = []
    for f in range(folds):
        te = fold == f
        if not te.any():
            continue
        model = fit_cv(ex.x[~te], y[~te], [k for k, t in zip(ex.keys, te, strict=True) if not t], seed)
        pred[te] = model.predict(ex.x[te]) - model.bias  # see the module docstring: no intercept when pooled
        lams.append(model.lam)
    return pred, lams


@dataclass(frozen=True)
class FitResult:
    report: dict[str, Any]
    accepted: bool
    policy: Policy | None  # the new policy when accepted


def fit(
    records: Sequence[OutcomeRecord],
    classifier: Labeller,
    policy: Policy,
    cheap: str = "direct",
    expensive: str = "reasoning",
    features: FeatureSet = "embedding-v1",
    folds: int = FOLDS,
    seed: int = SEED,
    sources: Sequence[str] = (),
) -> FitResult:
    """Cross-validate, test, and (when better) fit on everything and build the new policy."""
    ex = examples(records, classifier, policy, cheap, expensive, features)
    n = len(ex.keys)
    if n < 2 * folds:
        raise InvalidInput(f"{n} records have outcomes for both {cheap!r} and {expensive!r}: need {2 * folds}")
    pred, lams = held_out_predictions(ex, folds, seed)
    held = paired_bootstrap(pred, ex.current, ex.cheap, ex.expensive, seed)
    accepted = bool(held["diff_lower_95"] > 0)
    report: dict[str, Any] = {
        "n": n,
        "skipped": ex.skipped,
        "cheap": cheap,
        "expensive": expensive,
        "features": features,
        "folds": folds,
        "seed": seed,
        "fold_lambdas": lams,
        "current_policy": policy.version,
        "data": list(sources),
        "held_out": held,
        "test": "one-sided paired bootstrap of mean accuracy over shares 10..90% (new - current) on the "
        "held-out predictions: write only if its 95% lower bound > 0",
        "accepted": accepted,
    }
    if not accepted:
        return FitResult(report, False, None)
    y = ex.expensive - ex.cheap
    model = fit_cv(ex.x, y, ex.keys, seed)
    weights = [round(float(w), 8) for w in model.weights]
    digest = hashlib.sha256(
        json.dumps([weights, round(model.bias, 8), features, cheap, expensive]).encode()
    ).hexdigest()[:12]
    version = f"fit-{digest}"
    at = datetime.now(UTC).replace(microsecond=0).isoformat()
    report.update(version=version, lam=model.lam)
    gain = GainModel(
        version=version,
        features=features,
        labels=list(classifier.labels),
        weights=weights,
        bias=round(model.bias, 8),
        center=[round(float(c), 8) for c in model.center],
        scale=[round(float(s), 8) for s in model.scale],
        cheap=cheap,
        expensive=expensive,
        fitted={"data": list(sources), "n": n, "folds": folds, "lambda": model.lam, "held_out": held, "at": at},
    )
    return FitResult(report, True, policy.model_copy(update={"gain": gain, "version": version}))


def write_policy_atomic(policy: Policy, path: Path) -> None:
    """Write the policy YAML to a temp file beside ``path``, fsync it, then ``os.replace``: a router watching
    ``path`` sees the old file or the new one, never half of one. The file keeps the mode of the one it
    replaces (0644 when new: mkstemp's 0600 would hide it from a router running as another user)."""
    text = dump_policy(policy)
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
