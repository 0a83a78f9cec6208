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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from workers.replay.answer import Recorded, ReplayAnswer

MODELLED_NOTE = "modelled: p(letter) = (agreeing recorded models + 1) / (recorded models + 2)"


def letter_probability(models: Mapping[str, Mapping[int, Recorded]], qid: int, letter: str, exclude: str) -> float:
    """Laplace-smoothed share of the recorded models (``exclude`` left out) that answered ``letter``."""
    n = agree = 0
    for name, recs in models.items():
        rec = recs.get(qid)
        if name == exclude or rec is None or rec.letter is None:
            continue
        n += 1
        agree += rec.letter == letter
    return (agree + 1) / (n + 2)


def _token(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": []}


def modelled_logprobs(
    models: Mapping[str, Mapping[int, Recorded]], answer: ReplayAnswer, answering_model: str
) -> dict[str, Any]:
    """vLLM's ``logprobs`` object for ``answer`` (see the module doc for the model)."""
    letter, qid = answer.answer_letter, answer.question_id
    if letter is None or qid is None or not answer.content.startswith("The answer is ("):
        return {"content": [], "modelled": MODELLED_NOTE}
    p = letter_probability(models, qid, letter, answering_model)
    tokens = [_token(t, 0.0) for t in ("The", " answer", " is", " (")]
    tokens += [_token(letter, round(math.log(p), 6)), _token(").", 0.0)]
    return {"content": tokens, "modelled": MODELLED_NOTE}
