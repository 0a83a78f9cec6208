"""The lexical first tier: sparse features, the head's fit, the cascade's choice on validation, the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.classifier.lexical import LexicalFeatures, LexicalTier, token_features
from workers.classifier.lexical_fit import cascade, choose, fit_head, quantile_map, train_tier

VOCAB = 50
seqs_st = st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=0, max_size=12), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(seqs_st)
def test_sparse_rows_are_unit_and_match_dense(seqs: list[list[int]]) -> None:
    f = LexicalFeatures.fit_idf(seqs, VOCAB, buckets=64)
    x = f.matrix(seqs)
    dense = np.zeros((x.n_rows, x.n_cols))
    for i in range(x.n_rows):
        cols = x.indices[x.indptr[i] : x.indptr[i + 1]]
        dense[i, cols] = x.values[x.indptr[i] : x.indptr[i + 1]]
        assert len(set(cols.tolist())) == len(cols)  # each feature once per row
    norms = np.linalg.norm(dense, axis=1)
    for seq, n in zip(seqs, norms, strict=True):
        assert abs(n - (1.0 if seq else 0.0)) < 1e-5
    w = np.random.default_rng(0).normal(size=(x.n_cols, 3))
    np.testing.assert_allclose(x.matmul(w), dense @ w, rtol=1e-4, atol=1e-5)
    r = np.random.default_rng(1).normal(size=(x.n_rows, 3))
    np.testing.assert_allclose(x.rmatmul(r), dense.T @ r, rtol=1e-4, atol=1e-5)


def test_bigrams_are_hashed_after_the_vocabulary() -> None:
    f = token_features([3, 7, 3], VOCAB, 64)
    assert f[:3].tolist() == [3, 7, 3]
    assert all(VOCAB <= b < VOCAB + 64 for b in f[3:]) and len(f) == 5


def _toy() -> tuple[list[list[int]], np.ndarray]:
    rng = np.random.default_rng(3)
    seqs, y = [], []
    for i in range(120):
        k = i % 3
        seqs.append([10 * k + int(t) for t in rng.integers(0, 5, size=6)] + [int(t) for t in rng.integers(40, 50, 3)])
        y.append(k)
    return seqs, np.array(y)


def test_fit_head_learns_token_classes_and_the_file_round_trips(tmp_path: Path) -> None:
    seqs, y = _toy()
    f = LexicalFeatures.fit_idf(seqs, VOCAB, buckets=64)
    w, b = fit_head(f.matrix(seqs), y, 3, l2=1e-4)
    tier = LexicalTier(f, w, b, 0.75, 0.2)
    probs, scores = tier.predict([[1, 2, 3], [21, 22], [11, 14, 12]])
    assert probs.argmax(axis=1).tolist() == [0, 2, 1] and scores is None
    tier.save(tmp_path / "t.npz")
    back = LexicalTier.load(tmp_path / "t.npz")
    assert back.threshold == 0.75 and back.mix == 0.2
    rows = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.05, 0.2, 0.75]], np.float32)
    assert back.decides(rows).tolist() == [True, False, True, True]  # top probability >= 0.75
    old = dict(np.load(tmp_path / "t.npz"))
    np.savez(tmp_path / "old.npz", **{**old, "threshold": np.full(3, 0.75, np.float32)})  # recipe 7's [K]
    with pytest.raises(ValueError, match="older artefact recipe: rebuild"):
        LexicalTier.load(tmp_path / "old.npz")
    np.testing.assert_allclose(back.predict([[1, 2, 3]])[0], probs[:1], atol=2e-3)  # weights stored as fp16


def test_choose_never_loses_validation_accuracy() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 400)
    enc = np.full((400, 4), 0.1, np.float32)
    enc[np.arange(400), y] = 0.7
    enc[:40] = 0.25  # the encoder unsure of 40
    lex = np.full((400, 4), 0.02, np.float32)
    lex[np.arange(400), y] = 0.94
    lex[200:260] = np.roll(lex[200:260], 1, axis=1)  # confidently wrong on 60: the tier must not take those
    c = choose(lex, enc, y)
    pred, decided = cascade(lex, enc, c.threshold, c.mix)
    assert c.accuracy == float((pred == y).mean()) >= c.encoder_accuracy
    assert c.share == float(decided.mean())
    never = choose(lex * 0 + 0.25, enc, y)  # a tier that is never sure decides nothing
    assert never.share == 0.0 and never.threshold > 1


def test_score_is_mapped_onto_the_encoder_scale() -> None:
    seqs, y = _toy()
    target = (y == 2).astype(np.float64)
    enc_scores = np.linspace(0.3, 0.9, 60)
    val = seqs[:60]
    tier, _ = train_tier(
        seqs,
        y,
        val,
        y[:60],
        np.eye(3, dtype=np.float32)[y[:60]],
        VOCAB,
        3,
        (target, enc_scores),
    )
    _, scores = tier.predict(val)
    assert scores is not None and 0.3 - 1e-6 <= scores.min() and scores.max() <= 0.9 + 1e-6
    assert scores[y[:60] == 2].mean() > scores[y[:60] != 2].mean()
    m = quantile_map(np.arange(10.0), np.arange(10.0) * 2, n=5)
    assert m.shape == (2, 5) and m[1, -1] == 18
