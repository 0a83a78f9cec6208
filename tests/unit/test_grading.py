"""The graders on known answers: the replay server's Qwen3 replies, GSM8K's answers, tricky cases, properties."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from schemas.chat import ChatBody
from workers import data
from workers.data.prompts import format_mcq_prompt
from workers.grading import METHODS, agree, final_answer, grade, method_of, reference_of
from workers.replay.records import QWEN3_MODEL, load_default
from workers.replay.server import LatencyModel, create_app

LETTERS = "ABCDEFGHIJ"


def body(**metadata: str) -> ChatBody:
    return ChatBody.model_validate({"messages": [{"role": "user", "content": "q"}], "metadata": metadata or None})


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(load_default(), LatencyModel(time_scale=0))) as c:
        yield c


def test_the_replay_servers_qwen3_replies_grade_as_recorded(client: TestClient) -> None:
    rows = list(data.read_jsonl(data.QWEN3_THINK))
    assert len(rows) == 205
    counts = {True: 0, False: 0}
    for row in rows:
        line = body(reference=row["answer"])
        reference, method = reference_of(line) or ("", None)
        for thinking, prefix in ((True, "think"), (False, "nothink")):
            prompt = format_mcq_prompt(row["question"], row["options"])
            reply: dict[str, Any] = client.post(
                "/v1/chat/completions",
                json={
                    "model": QWEN3_MODEL,
                    "messages": [{"role": "user", "content": prompt}],
                    "chat_template_kwargs": {"enable_thinking": thinking},
                },
            ).json()
            content = reply["choices"][0]["message"]["content"]
            g = grade(content, reference, method)
            assert g.method == "choice" and g.extracted == row[f"{prefix}_pred"], (row["question_id"], content)
            assert g.correct == bool(int(row[f"{prefix}_correct"])), row["question_id"]
            counts[thinking] += g.correct
    assert counts == {True: 170, False: 162}  # the records' own accuracy: 170/205 thinking, 162/205 not


def test_every_gsm8k_answer_grades_correct_and_a_perturbed_one_wrong() -> None:
    rows = list(data.read_jsonl(data.GSM8K_TRAIN))
    assert len(rows) == 7473
    for row in rows:
        solution = row["answer"]
        n = solution.rsplit("####", 1)[1].strip()
        assert grade(solution, n).correct, (n, solution[-80:])
        assert grade(solution, n, "numeric").correct
        value = Fraction(n.replace(",", ""))
        assert not grade(solution, str(value + 1 + abs(value) / 1000)).correct, n  # beyond the 1e-6 tolerance
        # the text without its "####" line: the last number of the worked solution is the answer too
        assert final_answer(re.sub(r"####.*", "", solution), "numeric") is not None


@pytest.mark.parametrize(
    ("text", "method", "expected"),
    [
        ("The answer is (C).", "choice", "C"),
        ("the answer is D", "choice", "D"),
        ("Answer: (b)", "choice", "B"),
        ("I first thought (A), but the answer is (F).", "choice", "F"),
        ("The answer is (B). Final answer: **H**", "choice", "H"),
        ("**Option C: a linked list**", "choice", "C"),
        ("Looking at each option...\n\nJ\n", "choice", "J"),
        ("The answer is a matter of taste.", "choice", None),  # the article is no letter
        ("**C++** is the language", "choice", None),
        ("The answer is (K).", "choice", None),  # beyond J
        ("<think>The answer is (A).</think>The answer is (B).", "choice", "B"),  # thinking is never graded
        ("<think>the answer is (A)... still thinking", "choice", None),
        ("#### 1,080", "numeric", "1080"),
        ("She pays $12.50 for 3 items.\n#### 12.5", "numeric", "12.5"),
        ("so x = \\boxed{\\frac{3}{4}} (in 2 steps)", "numeric", "0.75"),
        ("That is 3/4 of the cake.", "numeric", "0.75"),
        ("The loss is -42.", "numeric", "-42"),
        ("It went up by 50%.", "numeric", "50"),
        ("between 5-3 and then 1,234,567", "numeric", "1234567"),
        ("no digits here", "numeric", None),
        ('  "Paris."  ', "exact", "paris"),
        ("The answer is:   New   York City!", "exact", "new york city"),
        ("**Mount Everest**", "exact", "mount everest"),
        ("", "exact", None),
        (None, None, None),
        ("The answer is (E).", None, "E"),
        ("Total: 18 clips.\n#### 18", None, "18"),
        ("She has 3 cats and 2 dogs.", None, "she has 3 cats and 2 dogs"),  # automatic: no last-number guess
        ("The answer is 12.", None, "12"),
    ],
)
def test_extractors_on_tricky_cases(text: str | None, method: Any, expected: str | None) -> None:
    assert final_answer(text, method) == expected


def test_reference_of_reads_the_metadata() -> None:
    assert reference_of(body()) is None
    assert reference_of(body(reference="B")) == ("B", None)
    assert reference_of(body(answer="42", grader="numeric")) == ("42", "numeric")
    assert reference_of(body(reference="Paris", answer="x", grader="EXACT")) == ("Paris", "exact")
    assert reference_of(body(reference="  ", grader="bogus")) is None
    assert reference_of(body(reference="7", grader="bogus")) == ("7", None)  # unknown grader: automatic


def test_grade_chooses_the_method_from_the_reference() -> None:
    assert [method_of(r) for r in ("B", "(c)", "42", "-3/4", "1,000", "Paris", "AB")] == [
        "choice",
        "choice",
        "numeric",
        "numeric",
        "numeric",
        "exact",
        "exact",
    ]
    g = grade("The answer is (B).", "(B)")
    assert (g.method, g.correct, g.extracted, g.reference) == ("choice", True, "B", "B")
    assert not grade("The answer is (C).", "B").correct
    assert grade("so she has 0.75 of it", "3/4").correct
    assert grade("#### 1000000.0000001", "1000000").correct  # within 1e-6 relative
    assert not grade("#### 1000002", "1000000").correct
    assert not grade(None, "B").correct and grade(None, "B").extracted is None
    fallback = grade("abc", "not a number", "numeric")  # a reference the method cannot read: exact
    assert (fallback.method, fallback.correct) == ("exact", False)
    assert grade("The answer is: Not A Number.", "not a number", "numeric").correct


def test_agree_compares_final_answers() -> None:
    assert agree("The answer is (B).", "**B**") is True
    assert agree("The answer is (B).", "Answer: C") is False
    assert agree("#### 72", "The answer is 72.0") is True
    assert agree("The answer is (B).", "I do not know") is False
    assert agree("The answer is (B).", None) is None
    assert agree("<think>lots</think>", "B") is None


# --- properties -------------------------------------------------------------------------------------------


@given(st.integers(min_value=-(10**9), max_value=10**9), st.sampled_from(["{:,}", "{}", "{}.0", "{}.00"]))
def test_a_number_formatted_several_ways_grades_equal(n: int, fmt: str) -> None:
    text = f"Working it out, the total is {fmt.format(n)}."
    for reference in (str(n), f"{n:,}", f"{n}.0"):
        assert grade(text, reference).correct, (text, reference)
        assert grade(f"#### {fmt.format(n)}", reference, "numeric").correct
    assert not grade(text, str(n + 1 + abs(n) // 1000)).correct


@given(st.fractions(min_value=-1000, max_value=1000, max_denominator=50))
def test_a_fraction_and_its_decimal_grade_equal(x: Fraction) -> None:
    assert grade(f"#### {x.numerator}/{x.denominator}", format(float(x), ".15g")).correct


@given(
    st.sampled_from(LETTERS), st.sampled_from(LETTERS), st.sampled_from(["The answer is ({}).", "Answer: {}", "**{}**"])
)
def test_a_different_letter_never_grades_correct(right: str, given_letter: str, form: str) -> None:
    assert grade(form.format(given_letter), right).correct is (right == given_letter)


@given(st.text(max_size=200), st.sampled_from([*METHODS, None]))
def test_final_answers_are_fixed_points(text: str, method: Any) -> None:
    once = final_answer(text, method)
    if once is not None:
        assert final_answer(once, method) == once
        assert agree(once, text, method) is True
