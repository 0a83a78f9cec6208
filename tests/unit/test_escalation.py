"""Answer confidence from a completion body, the escalated decision, and the replay's modelled logprobs."""

from __future__ import annotations

import math

import pytest

from tests.factories import route_decision
from workers.inference.escalation import answer_confidence, escalated_decision, extract_letter
from workers.replay.answer import Recorded, ReplayAnswer
from workers.replay.logprobs import letter_probability, modelled_logprobs


def _body(content: str | None, logprobs: object = None, finish: str = "stop") -> dict[str, object]:
    message = {"role": "assistant", "content": content}
    return {"choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}]}


def _lp(tokens: list[tuple[str, float]]) -> dict[str, object]:
    return {"content": [{"token": t, "logprob": lp} for t, lp in tokens]}


def test_extract_letter() -> None:
    assert extract_letter("so the answer is (C).") == "C"
    assert extract_letter("The answer is B") == "B"
    assert extract_letter("Answer: (J)") == "J"
    assert extract_letter("first the answer is (A), no wait, the answer is (D).") == "D"
    assert extract_letter("I do not know") is None
    assert extract_letter(None) is None


def test_confidence_format_check_and_logprobs() -> None:
    assert answer_confidence(_body("The answer is (C).")) == 1.0  # no logprobs: format check only
    assert answer_confidence(_body("no idea")) == 0.0
    assert answer_confidence(_body("The answer is (C).", finish="length")) == 0.0
    assert answer_confidence({"choices": []}) == 0.0
    toks = [("The", 0.0), (" answer", 0.0), (" is", 0.0), (" (", 0.0), ("C", math.log(0.25)), (").", 0.0)]
    assert answer_confidence(_body("The answer is (C).", _lp(toks))) == pytest.approx(0.25)
    # no token equals the letter: exp(mean logprob)
    mean = [("x", math.log(0.5)), ("y", math.log(0.5))]
    assert answer_confidence(_body("The answer is (C).", _lp(mean))) == pytest.approx(0.5)


def test_escalated_decision() -> None:
    d = route_decision("direct", confidence=0.8, model="small")
    up = escalated_decision(d, "large")
    assert (up.route, up.use_reasoning, up.model, up.reason) == ("reasoning", True, "large", "category+escalated")
    assert escalated_decision(d, None).model == "small"


def test_modelled_logprobs_from_agreement() -> None:
    models = {
        "a": {1: Recorded("B", 10)},
        "b": {1: Recorded("B", 10)},
        "c": {1: Recorded("C", 10)},
        "me": {1: Recorded("B", 10)},
    }
    assert letter_probability(models, 1, "B", "me") == pytest.approx(3 / 5)  # (2 agree + 1) / (3 + 2)
    ans = ReplayAnswer("The answer is (B).", None, 20, 10, 0, "record", 1, "B")
    lp = modelled_logprobs(models, ans, "me")
    assert lp["modelled"]
    letter = [t for t in lp["content"] if t["token"] == "B"]
    assert len(letter) == 1 and letter[0]["logprob"] == pytest.approx(math.log(3 / 5), abs=1e-6)
    body = _body(ans.content, lp)
    assert answer_confidence(body) == pytest.approx(3 / 5, abs=1e-5)
    none = ReplayAnswer("No answer was extracted.", None, 20, 10, 0, "record", 1, None)
    assert modelled_logprobs(models, none, "me")["content"] == []
