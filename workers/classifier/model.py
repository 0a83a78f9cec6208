"""The prompt classifier: MMLU-Pro category of a prompt, from one ONNX file (encoder + heads).

The artefact (see ``workers.classifier.build``) holds ``model.onnx`` (int8, for CPU), ``model_float.onnx``
(fp32, for CUDA), both input_ids / attention_mask / token_type_ids -> ``probs`` [B, n_labels] and
``reasoning_score`` [B], plus ``tokenizer.json``, ``labels.json`` and ``card.json``.
Tokenisation (``workers.classifier.tokens``) is shared with training, so both read prompts alike.

On CPU every prompt is its own ONNX run, on a pool of single-threaded runs (one per core): the int8
model quantizes activations with ranges taken from its input, so one prompt per run makes each result
a function of that prompt alone (never of the batch it came in), and costs no padding. Measured on 2
cores this is as fast as length-bucketed batches. On CUDA prompts run in length-bucketed batches.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from workers.classifier.graph import EMBEDDING as EMBEDDING_OUTPUT
from workers.classifier.graph import with_embedding_output
from workers.classifier.lexical import FILE as LEXICAL_FILE
from workers.classifier.lexical import LexicalTier
from workers.classifier.session import CUDA, create_session, encoder_feed
from workers.classifier.tokens import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
    DEFAULT_MAX_LENGTH,
    BoolArray,
    IntArray,
    TextEncoder,
    length_batches,
)

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
SCORE_OUTPUT = "reasoning_score"


@dataclass(frozen=True)
class Classification:
    category: str
    confidence: float
    truncated: bool
    n_tokens: int  # length before truncation, special tokens included
    reasoning_score: float | None = None  # per-prompt score (predicted difficulty), when the model has one
    probs: tuple[float, ...] | None = None  # every label's probability, in the order of ``Classifier.labels``
    embedding: tuple[float, ...] | None = None  # the pooled, L2-normalised sentence embedding (``embeddings=True``)
    tier: str = "encoder"  # what decided the category: "encoder" or "lexical" (the first tier)


class FirstPass(NamedTuple):
    """The first tier's pass over prompts: probabilities [N, K] and scores [N] (None without a score head), fresh
    arrays the caller may write into, and which prompts it decides."""

    probs: FloatArray
    scores: FloatArray | None
    decided: BoolArray


def _source(path: Path, embeddings: bool) -> Path | bytes:
    return with_embedding_output(path) if embeddings else path


class Classifier:
    """Blocking classifier over one artefact dir; call ``classify`` from a worker thread."""

    def __init__(
        self,
        session: ort.InferenceSession,
        encoder: TextEncoder,
        labels: list[str],
        version: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
        workers: int = 0,
        tier: LexicalTier | None = None,
    ) -> None:
        """``workers`` > 0: one prompt per run on that many threads (CPU); 0: length-bucketed batches.
        ``tier``: the lexical first tier (``workers.classifier.lexical``), which decides the prompts it is sure of."""
        self.tier = tier
        self.session = session
        self.encoder = encoder
        self.labels = labels
        self.version = version
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.providers: list[str] = list(session.get_providers())
        outputs = [o.name for o in session.get_outputs()]
        self._output = "probs" if "probs" in outputs else outputs[0]
        self._score = SCORE_OUTPUT if SCORE_OUTPUT in outputs else None
        self._names = [self._output] if self._score is None else [self._output, self._score]
        self._embedding = EMBEDDING_OUTPUT if EMBEDDING_OUTPUT in outputs else None
        if self._embedding is not None:
            self._names.append(self._embedding)
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="classifier") if workers > 0 else None
        self._closed = False

    def close(self) -> None:
        """Stop the worker threads (the session itself is released with the object); later calls raise."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def parallelism(self) -> int:
        """Prompts classified at once: one per CPU thread, or one batch on CUDA."""
        return self.workers if self._pool is not None else 1

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @classmethod
    def load(
        cls,
        artifact_dir: Path,
        providers: str = "auto",
        intra_op_threads: int | None = None,
        embeddings: bool = False,
        first_tier: bool = True,
    ) -> Classifier:
        """The artefact's classifier: CUDA (fp32 model, batches) when usable, else CPU (int8 model).

        ``intra_op_threads``: CPU threads (one prompt per thread; default one per core) or, on CUDA,
        ONNX Runtime's own intra-op threads. ``embeddings``: also return each prompt's pooled sentence
        embedding (the graph's internal tensor, made an output of the model held in memory; the artefact
        on disk and its cache key are unchanged). ``first_tier``: use the artefact's lexical first tier
        (``lexical.npz``) when it has one and the encoder runs on CPU (on CUDA the batched encoder outruns the
        tier's own numpy throughput, so every prompt goes to it).
        """
        artifact_dir = Path(artifact_dir)
        card: dict[str, Any] = json.loads((artifact_dir / "card.json").read_text(encoding="utf-8"))
        labels = [str(x) for x in json.loads((artifact_dir / "labels.json").read_text(encoding="utf-8"))]
        max_length = int(card.get("max_length", DEFAULT_MAX_LENGTH))
        encoder = TextEncoder.from_file(artifact_dir / "tokenizer.json", max_length)
        workers = 0
        session: ort.InferenceSession | None = None
        float_model = artifact_dir / "model_float.onnx"
        if providers == "cuda" or (providers == "auto" and CUDA in ort.get_available_providers()):
            session = create_session(
                _source(float_model if float_model.is_file() else artifact_dir / "model.onnx", embeddings),
                providers,
                intra_op_threads,
            )
            if CUDA not in session.get_providers():
                session = None  # fell back: the int8 model is the faster one on CPU
        if session is None:
            session = create_session(_source(artifact_dir / "model.onnx", embeddings), "cpu", 1)
            workers = intra_op_threads or os.cpu_count() or 1
        n_out = session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(labels):
            raise ValueError(f"model has {n_out} outputs but labels.json lists {len(labels)} labels")
        log.info("loaded classifier %s from %s (%d labels)", card.get("version"), artifact_dir, len(labels))
        tier_file = artifact_dir / LEXICAL_FILE
        on_cpu = CUDA not in session.get_providers()
        tier = LexicalTier.load(tier_file) if first_tier and on_cpu and tier_file.is_file() else None
        return cls(session, encoder, labels, str(card.get("version", "")), workers=workers, tier=tier)

    def encode(self, texts: Sequence[str]) -> tuple[IntArray, IntArray, BoolArray, IntArray]:
        """(input_ids, attention_mask) padded to the longest text, truncated flags, untruncated lengths."""
        seqs, truncated, lengths = self.encoder.tokenize(texts)
        ids, mask = self.encoder.pad(seqs)
        return ids, mask, truncated, lengths

    def _run(self, seqs: list[list[int]]) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
        """Class probabilities [N, K], reasoning scores [N] (None without a score head) and embeddings
        [N, D] (None unless loaded with ``embeddings=True``)."""
        outs: list[FloatArray | None] = [None] * len(self._names)
        if self._pool is not None:
            parts: list[tuple[IntArray, list[Any]]] = [
                (np.array([i]), r) for i, r in enumerate(self._pool.map(self._run_one, seqs))
            ]
        else:
            parts = []
            for idx in length_batches([len(s) for s in seqs], self.batch_size, self.max_batch_tokens):
                ids, mask = self.encoder.pad([seqs[i] for i in idx])
                parts.append((idx, list(self.session.run(self._names, encoder_feed(self.session, ids, mask)))))
        for idx, results in parts:
            for j, value in enumerate(results):
                arr = np.asarray(value, dtype=np.float32).reshape(len(idx), -1)
                if outs[j] is None:
                    outs[j] = np.zeros((len(seqs), arr.shape[1]), dtype=np.float32)
                outs[j][idx] = arr  # type: ignore[index]
        probs = outs[0] if outs[0] is not None else np.zeros((0, len(self.labels)), dtype=np.float32)
        scores = outs[1].reshape(-1) if self._score is not None and outs[1] is not None else None
        embs = outs[-1] if self._embedding is not None else None
        return probs, scores, embs

    def _run_one(self, seq: list[int]) -> list[Any]:
        ids, mask = self.encoder.pad([seq])
        return list(self.session.run(self._names, encoder_feed(self.session, ids, mask)))

    def _probs(self, seqs: list[list[int]]) -> FloatArray:
        return self._run(seqs)[0]

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Class probabilities [len(texts), len(labels)] in the order of ``labels``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        seqs, _, _ = self.encoder.tokenize(texts)
        return self._probs(seqs)

    def tier_pass(
        self, texts: Sequence[str], tier: LexicalTier | None
    ) -> tuple[list[list[int]], BoolArray, IntArray, FirstPass | None]:
        """What ``classify`` does before the encoder: the prompts' token ids (cut to the window), truncated flags
        and lengths, and with a ``tier`` its probabilities, scores and the prompts it decides (``loadgen bench``
        times this alone: the tier's own throughput)."""
        seqs, truncated, lengths, bodies = self.encoder.tokenize_full(texts)
        if tier is None:
            return seqs, truncated, lengths, None
        probs, scores = tier.predict(bodies)
        return seqs, truncated, lengths, FirstPass(probs, scores, tier.decides(probs))

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        """Classify prompts. With a first tier, the prompts it is sure of skip the encoder (no embedding for
        them); ``embeddings=True`` on a classifier loaded with embeddings sends every prompt to the encoder."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if self._closed:
            raise RuntimeError("the classifier is closed")  # also when the first tier would decide every prompt
        if not texts:
            return []
        tier = self.tier if not (embeddings and self._embedding is not None) else None
        seqs, truncated, lengths, first = self.tier_pass(texts, tier)
        if first is None or tier is None:  # one test for mypy: tier_pass returns None exactly when tier is None
            decided = np.zeros(len(seqs), dtype=bool)
            probs, scores, embs = self._run(seqs)
        else:
            probs, scores, decided = first.probs, first.scores, first.decided
            rest = np.flatnonzero(~decided)
            embs = None
            if len(rest):
                p_enc, s_enc, _ = self._run([seqs[i] for i in rest])
                probs[rest] = tier.combine(p_enc, probs[rest])
                if s_enc is not None and scores is not None:
                    scores[rest] = s_enc
        best = probs.argmax(axis=1)
        return [
            Classification(
                category=self.labels[int(k)],
                confidence=float(probs[i, k]),
                truncated=bool(truncated[i]),
                n_tokens=int(lengths[i]),
                reasoning_score=None if scores is None else float(scores[i]),
                probs=tuple(probs[i].tolist()),
                embedding=None if embs is None else tuple(embs[i].tolist()),
                tier="lexical" if decided[i] else "encoder",
            )
            for i, k in enumerate(best)
        ]
