"""Build the lexical first tier for a composed artefact: fit on the training questions, place on validation.

Writes ``lexical.npz`` into the artefact dir and returns the card section (choice on validation, figures on
the held-out split, measured through ``Classifier`` with and without the tier).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.classifier.corpus import Item
from workers.classifier.lexical import FILE
from workers.classifier.lexical_fit import train_tier
from workers.classifier.model import Classifier
from workers.classifier.tokens import TextEncoder

log = logging.getLogger(__name__)

RENDERINGS = 2  # random renderings per training question, on top of its fixed one


def _body(encoder: TextEncoder, texts: list[str]) -> list[list[int]]:
    return [e.ids[1:-1] for e in encoder.tokenizer.encode_batch(texts)]


def build_tier(
    artifact_dir: Path, items: list[Item], seed: int, train_scores: npt.NDArray[np.floating] | None = None
) -> dict[str, Any]:
    """Fit, place and save the tier of the artefact in ``artifact_dir``; the card's ``first_tier`` section.

    ``train_scores``: the encoder's reasoning scores of the training questions (fixed renderings, in ``items``
    order), the target the tier's own score is distilled from, every rendering of a question sharing its
    question's; None: the tier gives no score (the encoder scores every prompt)."""
    start = time.monotonic()
    with Classifier.load(artifact_dir, providers="cpu", first_tier=False) as clf:
        labels = clf.labels
        encoder = clf.encoder
        train = [it for it in items if it.side == "train"]
        rng = random.Random(seed)
        texts = [it.fixed_text(seed) for it in train]
        texts += [it.random_text(rng) for it in train for _ in range(RENDERINGS)]
        order = train + [it for it in train for _ in range(RENDERINGS)]
        y = np.array([labels.index(it.label) for it in order], dtype=np.int64)
        val = [it for it in items if it.side == "validation"]
        val_texts = [it.fixed_text(seed) for it in val]
        val_y = np.array([labels.index(it.label) for it in val], dtype=np.int64)
        val_classes = clf.classify(val_texts, embeddings=False)
    score = None
    if train_scores is not None:
        if len(train_scores) != len(train):
            raise ValueError(f"{len(train_scores)} training scores for {len(train)} training questions")
        score = (
            np.asarray(train_scores, np.float64),
            np.array([c.reasoning_score or 0.0 for c in val_classes], dtype=np.float64),
        )
    val_enc = np.array([c.probs for c in val_classes], dtype=np.float32)
    vocab = encoder.tokenizer.get_vocab_size()
    tier, choice = train_tier(
        _body(encoder, texts),
        y,
        _body(encoder, val_texts),
        val_y,
        val_enc,
        vocab,
        len(labels),
        score,
    )
    tier.save(artifact_dir / FILE)
    log.info(
        "first tier: threshold %.2f, mix %.2f, decides %.1f%% of validation (%.4f vs encoder %.4f), %.0f s",
        choice.threshold,
        choice.mix,
        100 * choice.share,
        choice.accuracy,
        choice.encoder_accuracy,
        time.monotonic() - start,
    )
    return {
        "kind": "lexical: WordPiece unigrams + hashed bigrams, (1 + log tf) * idf, L2; softmax head",
        "threshold": round(choice.threshold, 3),
        "mix": choice.mix,
        "validation": {
            "share": round(choice.share, 4),
            "cascade_accuracy": round(choice.accuracy, 4),
            "encoder_accuracy": round(choice.encoder_accuracy, 4),
        },
        "seconds": round(time.monotonic() - start, 1),
    }
