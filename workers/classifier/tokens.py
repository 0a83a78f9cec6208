"""Tokenisation the encoder and the first tier share, at training and at inference: the head+tail cut to the
encoder's window, padding, and batches of similar length."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 64
# Cap on padded tokens per ONNX call: long batches of 64 x 128 run ~15-20% slower per token on CPU
# (the [B, 12, T, T] attention tensors fall out of cache) than smaller ones.
DEFAULT_MAX_BATCH_TOKENS = 2048
HEAD_FRACTION = 0.75


def head_tail(ids: Sequence[int], max_length: int, head_fraction: float = HEAD_FRACTION) -> list[int]:
    """Cut ``[CLS] body [SEP]`` to ``max_length``: [CLS] + first head + last tail body tokens + [SEP]."""
    if len(ids) <= max_length:
        return list(ids)
    window = max_length - 2
    head = round(window * head_fraction)
    tail = window - head
    body = ids[1:-1]
    return [ids[0], *body[:head], *body[len(body) - tail :], ids[-1]]


class TextEncoder:
    """Tokenizer without padding or truncation; head+tail cut to ``max_length``; per-batch padding."""

    def __init__(self, tokenizer: Tokenizer, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 4:
            raise ValueError(f"max_length must be at least 4, got {max_length}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        pad_id = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id

    @classmethod
    def from_file(cls, path: Path, max_length: int = DEFAULT_MAX_LENGTH) -> TextEncoder:
        return cls(Tokenizer.from_file(str(path)), max_length)

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], BoolArray, IntArray]:
        """Token ids per text (cut to max_length), truncated flags, lengths before the cut."""
        seqs, truncated, lengths, _ = self.tokenize_full(texts)
        return seqs, truncated, lengths

    def tokenize_full(self, texts: Sequence[str]) -> tuple[list[list[int]], BoolArray, IntArray, list[list[int]]]:
        """``tokenize`` plus each text's whole token ids without [CLS] / [SEP] (what the first tier reads)."""
        encodings = self.tokenizer.encode_batch(list(texts))
        seqs: list[list[int]] = []
        bodies: list[list[int]] = []
        lengths = np.zeros(len(encodings), dtype=np.int64)
        for i, enc in enumerate(encodings):
            lengths[i] = len(enc.ids)
            seqs.append(head_tail(enc.ids, self.max_length))
            bodies.append(enc.ids[1:-1])
        return seqs, lengths > self.max_length, lengths, bodies

    def pad(self, seqs: Sequence[Sequence[int]]) -> tuple[IntArray, IntArray]:
        """Pad to the longest sequence given: (input_ids, attention_mask), both int64 [B, T]."""
        width = max((len(s) for s in seqs), default=0)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask


def length_batches(
    sizes: Sequence[int] | IntArray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
) -> list[IntArray]:
    """Indices grouped by similar length: at most batch_size items (and max_batch_tokens padded tokens)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    arr = np.asarray(sizes, dtype=np.int64)
    order = np.argsort(arr, kind="stable")
    batches: list[IntArray] = []
    start = 0
    while start < len(order):
        end = min(start + batch_size, len(order))
        if max_batch_tokens is not None:
            # the longest item of a batch is its last one (sorted ascending); shrink until it fits
            while end - start > 1 and int(arr[order[end - 1]]) * (end - start) > max_batch_tokens:
                end -= 1
        batches.append(order[start:end])
        start = end
    return batches
