"""The per-prompt gain model: a linear head, fitted by ``thinkroute fit`` on recorded outcomes, that predicts
how much the expensive arm gains over the cheap one on a prompt, from the classifier's own signals.

Features (``FEATURES``):

* ``signals-v1``: the reasoning score, the confidence, log(1 + tokens), and the category probabilities.
* ``embedding-v1``: signals-v1, then the classifier's pooled, L2-normalised sentence embedding (384 values);
  the classifier must be loaded with ``Classifier.load(..., embeddings=True)`` (``GainModel.needs_embeddings``).

A model is stored in the policy file (``workers.router.policy.Policy.gain``), standardised weights included,
so a router needs nothing but the policy to apply it. ``priority`` is the predicted gain (higher: send to the
expensive arm first); its scale is the model's own, which is why a budget's threshold is a rank, not a value.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.classifier.model import Classification

FeatureSet = Literal["signals-v1", "embedding-v1"]
FEATURES: tuple[str, ...] = ("signals-v1", "embedding-v1")


def feature_vector(
    c: Classification, labels: list[str], features: FeatureSet = "signals-v1"
) -> npt.NDArray[np.float64]:
    """One prompt's features, in the order the weights expect."""
    probs = [0.0] * len(labels)
    if c.probs is not None:
        probs = [float(p) for p in c.probs]
    score = 0.0 if c.reasoning_score is None else float(c.reasoning_score)
    signals = [score, float(c.confidence), math.log1p(c.n_tokens), *probs]
    if features == "signals-v1":
        return np.array(signals, dtype=np.float64)
    if c.embedding is None:
        raise ValueError(f"features {features} need the embedding: load the classifier with embeddings=True")
    return np.array([*signals, *c.embedding], dtype=np.float64)


class GainModel(BaseModel):
    """A fitted linear gain head: priority = bias + weights . ((x - center) / scale)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    features: FeatureSet = "signals-v1"
    labels: list[str] = Field(description="the classifier's labels, in the order of its probabilities")
    weights: list[float]
    bias: float = 0.0
    center: list[float]
    scale: list[float]
    cheap: str = "direct"
    expensive: str = "reasoning"
    fitted: dict[str, Any] = Field(default_factory=dict, description="how it was fitted and its held-out report")

    @model_validator(mode="after")
    def _sizes(self) -> GainModel:
        if not len(self.weights) == len(self.center) == len(self.scale):
            raise ValueError("weights, center and scale must have the same length")
        return self

    @property
    def needs_embeddings(self) -> bool:
        """Whether the classifier that feeds this model must be loaded with ``embeddings=True``."""
        return self.features == "embedding-v1"

    def priority(self, c: Classification) -> float:
        x = feature_vector(c, self.labels, self.features)
        if len(x) != len(self.weights):
            raise ValueError(f"gain model {self.version} expects {len(self.weights)} features, got {len(x)}")
        z = (x - np.asarray(self.center)) / np.asarray(self.scale)
        return float(self.bias + np.dot(np.asarray(self.weights), z))
