"""MODELLED token log-probabilities for replayed answers (the records hold no log-probabilities).

When a request asks for ``logprobs: true`` the replay server returns vLLM's ``choices[0].logprobs``
shape, ``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``, over the tokens of
``"The answer is (X)."``. Every token is certain (logprob 0.0) except the answer letter, whose
probability is modelled as the agreement of the recorded models on that question:

    p(letter) = (a + 1) / (n + 2)

where ``n`` is how many of the 29 recorded MMLU-Pro models (the answering model, or the proxy model whose
answer a Qwen3 proxy reply replays, excluded) have a
recorded letter for the question and ``a`` how many of them answered the same letter (Laplace-smoothed so
p is never 0 or 1). Agreement among models is a real, data-derived difficulty signal; as a confidence it is
optimistic (a deployed model sees only its own distribution, not 28 other models' answers). An answer
without a letter (no extractable "The answer is (X)", a synthetic reply, a cut-off output) gets no letter
token: the worker's answer-format check marks it low-confidence. Marked ``modelled`` in the reply.

``top_logprobs: k`` lists, per token, up to k alternatives from the same model, most probable first: the
certain tokens have none but themselves; at the letter, the chosen letter with p above and each other
letter some recorded model answered with p = (models answering it) / (n + 2), so the listed probabilities
add up to at most 1 (the rest is the smoothing mass). Fewer than k entries come back when the model gives
no other token a probability.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from workers.replay.answer import Recorded, ReplayAnswer

MODELLED_NOTE = "modelled: p(letter) = (agreeing recorded models + 1) / (recorded models + 2)"


def letter_counts(models: Mapping[str, Mapping[int, Recorded]], qid: int, exclude: str) -> tuple[int, Counter[str]]:
    """How many recorded models (``exclude`` left out) have a letter for ``qid``, and how many gave each."""
    counts: Counter[str] = Counter()
    for name, recs in models.items():
        rec = recs.get(qid)
        if name != exclude and rec is not None and rec.letter is not None:
            counts[rec.letter] += 1
    return sum(counts.values()), counts


def letter_probability(models: Mapping[str, Mapping[int, Recorded]], qid: int, letter: str, exclude: str) -> float:
    """Laplace-smoothed share of the recorded models (``exclude`` left out) that answered ``letter``."""
    n, counts = letter_counts(models, qid, exclude)
    return (counts[letter] + 1) / (n + 2)


def _entry(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode())}


def _token(text: str, logprob: float, top: list[dict[str, Any]]) -> dict[str, Any]:
    return {**_entry(text, logprob), "top_logprobs": top}


def modelled_logprobs(
    models: Mapping[str, Mapping[int, Recorded]], answer: ReplayAnswer, answering_model: str, top_logprobs: int = 0
) -> dict[str, Any]:
    """vLLM's ``logprobs`` object for ``answer`` (see the module doc for the model)."""
    letter, qid = answer.answer_letter, answer.question_id
    if letter is None or qid is None or not answer.content.startswith("The answer is ("):
        return {"content": [], "modelled": MODELLED_NOTE}
    n, counts = letter_counts(models, qid, answering_model)
    p = (counts[letter] + 1) / (n + 2)
    chosen = round(math.log(p), 6)

    def certain(text: str) -> dict[str, Any]:
        return _token(text, 0.0, [_entry(text, 0.0)] if top_logprobs else [])

    alternatives = [(letter, chosen)] + [
        (other, round(math.log(c / (n + 2)), 6)) for other, c in counts.items() if other != letter
    ]
    alternatives.sort(key=lambda alt: (-alt[1], alt[0]))
    top = [_entry(t, lp) for t, lp in alternatives[:top_logprobs]]
    tokens = [certain(t) for t in ("The", " answer", " is", " (")]
    tokens += [_token(letter, chosen, top), certain(").")]
    return {"content": tokens, "modelled": MODELLED_NOTE}
