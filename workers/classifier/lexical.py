"""The cheap first tier: a linear model over a prompt's WordPiece tokens, in front of the encoder.

Features (``LexicalFeatures``): the prompt's WordPiece ids (the tokenisation the encoder needs anyway, the whole
prompt, no window) and hashed bigrams of them, weighted ``(1 + log tf) * idf`` and L2-normalised per prompt.
A softmax head over them (``LexicalTier``) costs a gather-sum per prompt. The tier decides a prompt when its
top probability reaches ``threshold``; otherwise the encoder classifies it and the two are mixed in log space,
``softmax((1 - mix) * log p_encoder + mix * log p_lexical)``. ``threshold`` and ``mix`` are chosen on the
validation slice (never trained on) so that the cascade is not less accurate there than the encoder alone;
figures are reported on the held-out split only (``workers.classifier.lexical_fit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from workers.classifier.head import softmax

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

BIGRAM_BUCKETS = (
    1 << 15
)  # 2^17 measured the same validation accuracy (0.7973 alone at 100 iterations), fitted 1.5x slower
_MULT = 1_000_003
FILE = "lexical.npz"


@dataclass(frozen=True)
class Sparse:
    """Rows of a sparse matrix: ``indptr`` [N + 1], column ``indices`` and ``values`` [nnz]."""

    indptr: I64
    indices: I64
    values: F32
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def head(self, n: int) -> Sparse:
        """The first ``n`` rows."""
        end = int(self.indptr[n])
        return Sparse(self.indptr[: n + 1], self.indices[:end], self.values[:end], self.n_cols)

    def row_ids(self) -> I64:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.indptr))

    def matmul(self, w: npt.NDArray[np.floating]) -> F32:
        """``X @ w`` for a dense ``w`` [n_cols, K]; empty rows give zeros."""
        out = np.zeros((self.n_rows, w.shape[1]), dtype=np.float64)
        if len(self.indices):
            np.add.at(out, self.row_ids(), self.values[:, None] * w[self.indices])
        return out.astype(np.float32)

    def rmatmul(self, r: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """``X.T @ r`` for a dense ``r`` [n_rows, K]."""
        out = np.zeros((self.n_cols, r.shape[1]), dtype=np.float64)
        if len(self.indices):
            np.add.at(out, self.indices, self.values[:, None] * r[self.row_ids()])
        return out


def token_features(seq: Sequence[int], vocab: int, buckets: int = BIGRAM_BUCKETS) -> I64:
    """Feature ids of one tokenised prompt (special tokens already removed): unigrams, then hashed bigrams."""
    ids = np.asarray(seq, dtype=np.int64)
    bigrams = vocab + (ids[:-1] * _MULT + ids[1:]) % buckets
    return np.concatenate([ids, bigrams])


@dataclass(frozen=True)
class LexicalFeatures:
    vocab: int
    idf: F32  # [vocab + buckets]
    buckets: int = BIGRAM_BUCKETS

    @property
    def n_features(self) -> int:
        return self.vocab + self.buckets

    @staticmethod
    def fit_idf(seqs: Sequence[Sequence[int]], vocab: int, buckets: int = BIGRAM_BUCKETS) -> LexicalFeatures:
        """IDF ``log((N + 1) / (df + 1)) + 1`` over the given prompts."""
        df = np.zeros(vocab + buckets, dtype=np.float64)
        for seq in seqs:
            df[np.unique(token_features(seq, vocab, buckets))] += 1
        idf = np.log((len(seqs) + 1) / (df + 1)) + 1
        return LexicalFeatures(vocab, idf.astype(np.float32), buckets)

    def matrix(self, seqs: Sequence[Sequence[int]]) -> Sparse:
        indptr = [0]
        cols: list[I64] = []
        vals: list[F32] = []
        for seq in seqs:
            f, counts = np.unique(token_features(seq, self.vocab, self.buckets), return_counts=True)
            v = (1.0 + np.log(counts)) * self.idf[f]
            n = float(np.sqrt((v * v).sum()))
            cols.append(f)
            vals.append((v / n if n > 0 else v).astype(np.float32))
            indptr.append(indptr[-1] + len(f))
        indices = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        values = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        return Sparse(np.asarray(indptr, np.int64), indices, values, self.n_features)


def decided_by(probs: F32, threshold: float) -> npt.NDArray[np.bool_]:
    """Rows whose top probability reaches ``threshold``."""
    decided: npt.NDArray[np.bool_] = probs.max(axis=1) >= threshold
    return decided


def mixed_logits(p_encoder: F32, p_lexical: F32, mix: float) -> F32:
    """The cascade's log-space mix, ``(1 - mix) * log p_encoder + mix * log p_lexical``."""
    z: F32 = (1 - mix) * np.log(p_encoder + 1e-9) + mix * np.log(p_lexical + 1e-9)
    return z


@dataclass(frozen=True)
class LexicalTier:
    features: LexicalFeatures
    weight: F32  # [n_features, K]
    bias: F32  # [K]
    threshold: float  # the tier decides a prompt whose top probability reaches it (> 1: never)
    mix: float  # weight of the tier's log-probabilities when the encoder decides
    score_weight: F32 | None = None  # [n_features, 1]: ridge to the reasoning-score target
    score_bias: float = 0.0
    score_map: F32 | None = None  # [2, Q]: quantiles of the raw score -> the encoder's score quantiles

    def scores(self, x: Sparse) -> F32 | None:
        """Reasoning scores on the encoder's scale (quantile-mapped), or None without a score head."""
        if self.score_weight is None:
            return None
        raw = x.matmul(self.score_weight)[:, 0] + self.score_bias
        if self.score_map is None:
            return raw.astype(np.float32)
        mapped: F32 = np.interp(raw, self.score_map[0], self.score_map[1]).astype(np.float32)
        return mapped

    def predict(self, seqs: Sequence[Sequence[int]]) -> tuple[F32, F32 | None]:
        """(class probabilities [N, K], reasoning scores [N] or None)."""
        x = self.features.matrix(seqs)
        return softmax(x.matmul(self.weight) + self.bias), self.scores(x)

    def decides(self, probs: F32) -> npt.NDArray[np.bool_]:
        """Which prompts (rows of the tier's probabilities) the tier decides."""
        return decided_by(probs, self.threshold)

    def combine(self, p_encoder: F32, p_lexical: F32) -> F32:
        """The encoder's probabilities mixed with the tier's (for the prompts the encoder decides)."""
        if self.mix <= 0:
            return p_encoder
        return softmax(mixed_logits(p_encoder, p_lexical, self.mix))

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            allow_pickle=False,
            idf=self.features.idf,
            weight=self.weight.astype(np.float16),
            bias=self.bias,
            meta=np.array([self.features.vocab, self.features.buckets], dtype=np.int64),
            threshold=np.array(self.threshold, np.float32),
            params=np.array([self.mix, self.score_bias], dtype=np.float64),
            **({} if self.score_weight is None else {"score_weight": self.score_weight}),
            **({} if self.score_map is None else {"score_map": self.score_map}),
        )

    @classmethod
    def load(cls, path: Path) -> LexicalTier:
        with np.load(path, allow_pickle=False) as z:
            vocab, buckets = (int(x) for x in z["meta"])
            mix, score_bias = (float(x) for x in z["params"])
            if z["threshold"].ndim != 0:  # recipe 7 stored one value per class (all equal)
                raise ValueError(f"{path} is a first tier of an older artefact recipe: rebuild the artefact")
            threshold = float(z["threshold"])
            features = LexicalFeatures(vocab, np.asarray(z["idf"], np.float32), buckets)
            sw = np.asarray(z["score_weight"], np.float32) if "score_weight" in z else None
            sm = np.asarray(z["score_map"], np.float32) if "score_map" in z else None
            weight, bias = np.asarray(z["weight"], np.float32), np.asarray(z["bias"], np.float32)
            return cls(features, weight, bias, threshold, mix, sw, score_bias, sm)
