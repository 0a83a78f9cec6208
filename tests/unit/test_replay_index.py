"""QuestionIndex's verbatim search (anchored at spaces) finds exactly the questions a brute-force scan finds."""

from __future__ import annotations

import random

from workers.replay.index import PREFIX_CHARS, MmluRecord, QuestionIndex, normalize

QUESTIONS = [
    "Which of the following is a prime number?",
    "Which of the following is a prime number greater than ten?",  # the first is its prefix
    "Which of the following is not a mammal?",
    "What is an attitude?",  # 20 characters: no space early enough for an anchor
    "Supercalifragilisticexpialidocious means what",  # its only spaces are too late for an anchor
    "Presbyopia refers to",
    "What is a cell?",  # under PREFIX_CHARS: never found inside longer text
    "Evaluate $\\log_8 2$ and then explain the steps taken.",
]


def brute_force(index: QuestionIndex, norm: str) -> set[str]:
    return {q for q in index._by_text if len(q) >= PREFIX_CHARS and q in norm}


def test_verbatim_search_equals_brute_force_on_random_texts() -> None:
    records = [MmluRecord(i, q, ("a", "b"), "A", "math", "x") for i, q in enumerate(QUESTIONS)]
    index = QuestionIndex(records)
    assert sorted(index._unanchored) == [QUESTIONS[5], QUESTIONS[4], QUESTIONS[3]]
    rnd = random.Random(7)
    fillers = ["", " ", "x", "(", "Question: ", "zz ", ". ", "\n", "Which of the following"]
    hits = 0
    for _ in range(3000):
        parts = [rnd.choice(fillers)]
        for q in rnd.sample(QUESTIONS, rnd.randint(0, 3)):
            cut = rnd.choice([len(q), len(q), len(q) - 1, PREFIX_CHARS])  # whole, or a cut-off copy
            parts += [q[:cut], rnd.choice(fillers)]
        norm = normalize("".join(parts))
        expected = brute_force(index, norm)
        assert index._verbatim(norm) == expected, norm
        hits += bool(expected)
    assert hits > 1500  # the texts do contain questions, in most cases several


def test_find_prefers_the_longest_match() -> None:
    records = [MmluRecord(i, q, ("a", "b"), "A", "math", "x") for i, q in enumerate(QUESTIONS)]
    index = QuestionIndex(records)
    found = index.find("Answer this. Which of the following is a prime number greater than ten? A. 11 B. 12")
    assert found is not None and found.question_id == 1
    found = index.find("Please: Which of the following is a prime number? A. 4")
    assert found is not None and found.question_id == 0
    assert index.find("no known question here at all, none") is None
