"""``thinkroute train --data``: the labelled-file reader, the split, the softmax fit and the policy skeleton."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from workers.classifier.head import softmax
from workers.classifier.knn import VoteParams
from workers.classifier.softmax_fit import balanced_weights, fit_softmax, vote_mix
from workers.cli.app import app
from workers.data.prompts import format_mcq_prompt
from workers.errors import BadInput, InvalidInput
from workers.router.policy import load_policy
from workers.training.custom import policy_text
from workers.training.labelled import MIN_EXAMPLES, Example, read_labelled, split


def write(tmp_path: Path, lines: list[Any]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def rows(n_a: int = 10, n_b: int = 10) -> list[dict[str, Any]]:
    return [{"prompt": f"alpha question {i}", "topic": "a"} for i in range(n_a)] + [
        {"prompt": f"beta question {i}", "topic": "b"} for i in range(n_b)
    ]


def test_reads_labels_texts_and_line_numbers(tmp_path: Path) -> None:
    lines: list[Any] = [
        *rows(),
        "",  # blank lines are skipped, numbering is the file's
        {"question": "Which is largest?", "options": ["1", "2"], "meta": {"topic": "x"}, "topic": "a"},
        {
            "body": {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
            "topic": "b",
        },
        {"text": "plain text field", "topic": "b"},
    ]
    got = read_labelled(write(tmp_path, lines), "topic")
    assert len(got) == 23
    assert Counter(e.label for e in got) == {"a": 11, "b": 12}
    mcq, batch, plain = got[-3:]
    assert (mcq.line, batch.line, plain.line) == (22, 23, 24)
    assert mcq.text == format_mcq_prompt("Which is largest?", ["1", "2"])  # as `thinkroute classify` reads it
    assert batch.text == "hi"  # the router's text: the last user message
    assert plain.text == "plain text field"


def test_dotted_label_path_and_text_field(tmp_path: Path) -> None:
    lines = [{"meta": {"topic": r["topic"]}, "body_text": r["prompt"], "prompt": "ignored"} for r in rows()]
    got = read_labelled(write(tmp_path, lines), "meta.topic", text_field="body_text")
    assert {e.label for e in got} == {"a", "b"}
    assert got[0].text == "alpha question 0"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"prompt": "x", "topic": ', "line 21: invalid JSON"),
        ('["a list"]', "line 21: expected a JSON object, got list"),
        ({"prompt": "x"}, "line 21: no `topic` field"),
        ({"prompt": "x", "topic": 3}, "line 21: the label `topic` is not a string (got int)"),
        ({"prompt": "x", "topic": " "}, "line 21: the label `topic` is empty"),
        ({"prompt": "   ", "topic": "a"}, "line 21: empty text"),
        ({"prompt": ["x"], "topic": "a"}, "line 21: `prompt` is not a string (got list)"),
        ({"topic": "a", "other": "x"}, "line 21: no text: a line needs one of prompt, question, text"),
    ],
)
def test_bad_lines_name_the_line_and_the_problem(tmp_path: Path, bad: Any, message: str) -> None:
    with pytest.raises(BadInput, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_labelled(write(tmp_path, [*rows(), bad]), "topic")


def test_one_category_and_tiny_categories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 2 categories, found only 'a'"):
        read_labelled(write(tmp_path, rows(12, 0)), "topic")
    small = [*rows(12, MIN_EXAMPLES - 1), {"prompt": "gamma 1", "topic": "c"}]
    with pytest.raises(InvalidInput, match=r"at least 8 examples; too few: 'b' \(7\), 'c' \(1\)"):
        read_labelled(write(tmp_path, small), "topic")


def examples(n: int, labels: int = 3, dup_every: int = 5) -> list[Example]:
    out = []
    for i in range(n):
        text = f"Question  number {i // dup_every if i % dup_every == 0 else i} about {i % labels}"
        out.append(Example(text, f"c{i % labels}", i + 1))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(60, 300))
def test_split_is_deterministic_and_duplicates_share_a_side(seed: int, n: int) -> None:
    data = examples(n)
    # duplicates up to case and whitespace (the split key is the normalised text)
    data += [Example(e.text.upper().replace(" ", "   "), e.label, e.line + n) for e in data[::7]]
    first, second = split(data, seed), split(list(data), seed)
    assert [e.side for e in first] == [e.side for e in second]
    side_of: dict[str, set[str]] = {}
    for e in first:
        side_of.setdefault(" ".join(e.text.lower().split()), set()).add(e.side)
    assert all(len(s) == 1 for s in side_of.values())
    per_label = Counter((e.label, e.side) for e in first)
    for label in {e.label for e in first}:
        distinct = {" ".join(e.text.lower().split()) for e in first if e.label == label}
        if len(distinct) >= 10:  # every category of >= 10 distinct texts is measured
            assert per_label[(label, "heldout")] > 0
        assert per_label[(label, "train")] > 0


def test_split_fractions_are_about_the_documented_ones() -> None:
    sides = Counter(e.side for e in split(examples(5000, dup_every=10**9), 13))
    assert 0.18 < sides["heldout"] / 5000 < 0.22
    assert 0.10 < sides["validation"] / 5000 < 0.14  # 15% of the other 80%


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(2, 6), dim=st.integers(6, 24))
def test_softmax_fit_recovers_separable_labels(seed: int, k: int, dim: int) -> None:
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:k]  # orthonormal directions
    sizes = rng.integers(5, 60, size=k)  # imbalanced
    y = np.repeat(np.arange(k), sizes)
    x = centres[y] + 0.15 * rng.normal(size=(len(y), dim)) / np.sqrt(dim)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    fit = fit_softmax(x, y, k, 1e-3, balanced_weights(y, k))
    assert fit.grad_norm < 1e-6
    assert (fit.head.logits(x).argmax(1) == y).all()
    fresh = centres + 0.05 * rng.normal(size=centres.shape) / np.sqrt(dim)
    assert (fit.head.logits(fresh.astype(np.float32)).argmax(1) == np.arange(k)).all()


def test_softmax_fit_is_the_regularised_optimum() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=80)
    fit = fit_softmax(x, y, 3, 0.1, tol=1e-9)
    w, b = fit.head.weight.astype(np.float64), fit.head.bias.astype(np.float64)
    p = softmax(x @ w + b).astype(np.float64)
    onehot = np.eye(3)[y]
    grad_w = x.T @ (p - onehot) / 80 + 0.1 * w
    assert np.abs(grad_w).max() < 1e-5 and np.abs((p - onehot).mean(0)).max() < 1e-5


def test_balanced_weights_give_each_class_the_same_total() -> None:
    y = np.array([0] * 90 + [1] * 10 + [3] * 20)
    w = balanced_weights(y, 4)
    totals = [w[y == c].sum() for c in (0, 1, 3)]
    assert np.allclose(totals, 40.0) and np.isclose(w.sum(), len(y))


def test_vote_mix_weight_zero_is_the_head_and_neighbours_pull() -> None:
    bank = np.eye(3, dtype=np.float32)[[0] * 10 + [1] * 10 + [2] * 10]
    bank_y = np.repeat(np.arange(3), 10)
    logits = np.array([[2.0, 0.0, 0.0]], dtype=np.float32)
    q = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    assert np.allclose(vote_mix(logits, q, bank, bank_y, 3, VoteParams(weight=0.0)), softmax(logits))
    mixed = vote_mix(logits, q, bank, bank_y, 3, VoteParams(weight=0.5))
    assert mixed.argmax() == 1 and np.isclose(mixed.sum(), 1.0)


def test_policy_skeleton_loads_with_one_rule_per_label(tmp_path: Path) -> None:
    labels = ["life", "stem", "two words", "x: y"]
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text("abc", labels, tmp_path / "artefact"), encoding="utf-8")
    assert path.read_text().startswith("# Routing policy skeleton")
    policy = load_policy(path, labels)
    assert policy.version == "custom-abc-v1"
    assert policy.classifier == str(tmp_path / "artefact")
    assert sorted(policy.categories) == labels
    assert all(rule.use_reasoning is False for rule in policy.categories.values())


def test_cli_needs_data_and_label_field_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--label-field", "topic"])
    assert result.exit_code == 2
    assert "--data FILE.jsonl and --label-field FIELD" in result.output


def test_cli_reports_a_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, [*rows(), {"prompt": "x", "topic": 7}])
    result = CliRunner().invoke(app, ["train", "--data", str(path), "--label-field", "topic"])
    assert result.exit_code == 2
    assert "line 21: the label `topic` is not a string (got int)" in result.output
