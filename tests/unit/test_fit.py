"""``thinkroute fit``: ridge and held-out statistics, finding a known gain, refusing a model that is not better,
the atomic write, and ``eval-learning`` on small slices (a fake classifier whose signals are read off the text)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import workers.cli.learn
from schemas.outcomes import ArmOutcome, OutcomeRecord
from tests.unit.test_policy import LABELS
from workers.classifier.model import Classification
from workers.cli.app import app
from workers.errors import InvalidInput
from workers.evaluation.curve import mean_accuracy
from workers.evaluation.fit import fit, read_records, record_text, write_policy_atomic
from workers.evaluation.learning import Arrays, learning_table, simulate
from workers.evaluation.ridge import auc, choose_lambda, fit_ridge, fold_of, mean_accuracy_fast
from workers.router.policy import Policy, load_policy

PATTERN = re.compile(r"x=([0-9.]+) s=([0-9.]+)")


class FakeClassifier:
    """confidence = x and reasoning score = s, read off the prompt text; an 8-dim embedding from its hash."""

    labels = LABELS
    version = "fake"

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        out = []
        for t in texts:
            m = PATTERN.search(t)
            assert m is not None
            x, s = float(m.group(1)), float(m.group(2))
            h = np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8).astype(float)
            emb = h / np.linalg.norm(h)
            out.append(Classification("math", x, False, 20, s, (x, 1 - x, *[0.0] * 12), tuple(float(v) for v in emb)))
        return out

    def __enter__(self) -> FakeClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def synthetic(n: int, seed: int, informative: bool) -> list[OutcomeRecord]:
    """Gain 1 (expensive right, cheap wrong) when x > 0.6, else both arms agree; or, not informative,
    the gain drawn independently of every feature. s (the current policy's score) is noise."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        x, s = rng.random(), rng.random()
        if informative:
            both = float(rng.random() < 0.5)
            cheap, exp = (0.0, 1.0) if x > 0.6 else (both, both)
        else:
            cheap, exp = float(rng.random() < 0.5), float(rng.random() < 0.5)
        recs.append(
            OutcomeRecord(
                id=str(i),
                prompt=f"question {i} x={x:.4f} s={s:.4f}",
                outcomes={"direct": ArmOutcome(correct=cheap), "reasoning": ArmOutcome(correct=exp)},
            )
        )
    return recs


def base_policy() -> Policy:
    return load_policy(None, None)


# --- the statistics ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.booleans()), min_size=1, max_size=40),
)
def test_fast_mean_accuracy_equals_the_curve_module_ties_included(rows: list[tuple[int, bool, bool]]) -> None:
    p = np.array([r[0] for r in rows], dtype=float)  # few values: many ties
    cheap = np.array([r[1] for r in rows], dtype=float)
    exp = np.array([r[2] for r in rows], dtype=float)
    assert mean_accuracy_fast(p, cheap, exp) == pytest.approx(mean_accuracy(p, cheap, exp), abs=1e-12)


def test_auc_known_values() -> None:
    label = np.array([False, False, True, True])
    assert auc(np.array([0.1, 0.2, 0.3, 0.4]), label) == 1.0
    assert auc(np.array([0.4, 0.3, 0.2, 0.1]), label) == 0.0
    assert auc(np.array([1.0, 1.0, 1.0, 1.0]), label) == 0.5
    assert auc(np.array([0.1, 0.3, 0.2, 0.4]), label) == 0.75
    assert np.isnan(auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_ridge_recovers_a_linear_function_and_cv_picks_the_penalty() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5)) * [1, 2, 3, 4, 5] + 7
    y = 0.5 + x @ np.array([1.0, -2.0, 0.0, 0.5, 0.0])
    model = fit_ridge(x, y, 1e-9)
    assert np.allclose(model.predict(x), y, atol=1e-6)
    keys = [str(i) for i in range(400)]
    assert choose_lambda(x, y, keys, 13) == 0.1  # the smallest penalty of the grid for a noise-free signal
    assert choose_lambda(x, rng.normal(size=400), keys, 13) >= 1000  # pure noise: shrink everything


def test_folds_keep_equal_prompts_together_and_are_balanced() -> None:
    keys = [f"q{i % 500}" for i in range(1000)]  # each prompt twice
    fold = fold_of(keys, 5, 13)
    assert all(fold[i] == fold[i + 500] for i in range(500))
    counts = np.bincount(fold, minlength=5)
    assert counts.min() > 140 and counts.sum() == 1000
    assert not np.array_equal(fold, fold_of(keys, 5, 14))  # seeded


# --- fit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("features", ["signals-v1", "embedding-v1"])
def test_fit_finds_a_known_gain_and_writes_a_policy_that_orders_by_it(tmp_path: Path, features: str) -> None:
    result = fit(synthetic(600, 1, True), FakeClassifier(), base_policy(), features=features, sources=["syn"])  # type: ignore[arg-type]
    held = result.report["held_out"]
    assert result.accepted and result.policy is not None
    assert held["diff_lower_95"] > 0.05
    assert held["mean_accuracy"]["new"] > held["mean_accuracy"]["random"] + 0.05
    assert held["auc_gain"]["new"] > 0.9 and 0.4 < held["auc_gain"]["current"] < 0.6
    assert re.fullmatch(r"fit-[0-9a-f]{12}", result.policy.version)
    out = tmp_path / "policy.yaml"
    write_policy_atomic(result.policy, out)
    loaded = load_policy(out, LABELS)
    assert loaded.version == result.policy.version and loaded.gain is not None
    assert loaded.gain.fitted["n"] == 600 and loaded.gain.fitted["data"] == ["syn"]
    assert loaded.gain.needs_embeddings == (features == "embedding-v1")
    texts = [f"new x={x} s=0.5000" for x in ("0.9000", "0.7000", "0.3000", "0.1000")]
    prio = [loaded.priority(c) for c in FakeClassifier().classify(texts)]
    assert prio[0] > prio[2] and prio[1] > prio[3]  # above the 0.6 step first
    assert loaded.reasoning == base_policy().reasoning  # the rest of the policy is kept


def test_fit_refuses_random_labels_exit_1_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = tmp_path / "recs.jsonl"
    records.write_text("".join(r.model_dump_json(exclude_none=True) + "\n" for r in synthetic(400, 2, False)))
    monkeypatch.setattr(workers.cli.learn, "_classifier", lambda s, embeddings, named=None: FakeClassifier())
    out = tmp_path / "new.yaml"
    result = CliRunner().invoke(app, ["fit", "--records", str(records), "-o", str(out), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert report["accepted"] is False and report["held_out"]["diff_lower_95"] <= 0
    assert "not written" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [records]


def test_fit_cli_writes_when_better(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = tmp_path / "recs.jsonl.gz"
    with gzip.open(records, "wt") as f:
        f.writelines(r.model_dump_json(exclude_none=True) + "\n" for r in synthetic(500, 3, True))
    monkeypatch.setattr(workers.cli.learn, "_classifier", lambda s, embeddings, named=None: FakeClassifier())
    out = tmp_path / "new.yaml"
    result = CliRunner().invoke(app, ["fit", "--records", str(records), "-o", str(out), "--features", "signals-v1"])
    assert result.exit_code == 0, result.output
    assert "one-sided 95% lower bound" in result.stdout and "passed" in result.stdout
    assert load_policy(out, LABELS).gain is not None


def test_atomic_write_leaves_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "policy.yaml"
    out.write_text("old")
    result = fit(synthetic(300, 4, True), FakeClassifier(), base_policy(), features="signals-v1")  # type: ignore[arg-type]
    assert result.policy is not None

    def broken(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        write_policy_atomic(result.policy, out)
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]  # no temp file left either
    monkeypatch.undo()
    out.chmod(0o640)
    write_policy_atomic(result.policy, out)
    assert load_policy(out).version == result.policy.version and list(tmp_path.iterdir()) == [out]
    assert out.stat().st_mode & 0o777 == 0o640  # the mode of the file it replaced
    fresh = tmp_path / "fresh.yaml"
    write_policy_atomic(result.policy, fresh)
    assert fresh.stat().st_mode & 0o777 == 0o644  # readable by a router running as another user


def test_reader_names_the_bad_line_and_texts_follow_the_router(tmp_path: Path) -> None:
    good = synthetic(1, 5, True)[0].model_dump_json()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n\n" + '{"prompt": "p", "outcomes": {}}\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl:3"):
        read_records([bad])
    mcq = OutcomeRecord(question="Q?", options=["a", "b"], outcomes={"x": ArmOutcome(correct=1)})
    assert "Q?" in record_text(mcq) and "A. a" in record_text(mcq)
    body = OutcomeRecord.model_validate(
        {
            "body": {
                "model": "m",
                "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
            },
            "outcomes": {"x": {"correct": 0}},
        }
    )
    assert record_text(body) == "hi"


# --- eval-learning --------------------------------------------------------------------------------


def test_eval_learning_on_a_small_slice() -> None:
    recs = synthetic(400, 6, True)
    data = Arrays(
        "synthetic",
        "direct",
        "reasoning",
        [r.prompt or "" for r in recs],
        np.array([r.outcomes["direct"].correct for r in recs]),
        np.array([r.outcomes["reasoning"].correct for r in recs]),
        "synthetic",
    )
    result = simulate(data, FakeClassifier(), [0.15, 0.25], jobs=5, share=0.3, seed=13, features="signals-v1")  # type: ignore[arg-type]
    assert [r["explore"] for r in result["runs"]] == [0.15, 0.25]
    for run in result["runs"]:
        jobs = run["jobs"]
        assert [j["job"] for j in jobs] == [1, 2, 3, 4, 5]
        assert [j["trained_on"] for j in jobs] == [round(run["explore"] * 80) * i for i in range(5)]
        assert jobs[0]["new"] is None and all(j["new"] is not None for j in jobs[1:])
        for j in jobs:
            assert j["n"] == 80 - round(run["explore"] * 80)
            for k in ("shipped", "random", "oracle", *(["new"] if j["new"] else [])):
                m = j[k]
                assert 0 <= m["ci95"][0] <= m["accuracy"] <= m["ci95"][1] <= 1
                assert j["oracle"]["accuracy"] >= m["accuracy"]  # the true gain is the best ranking at a share
        pooled = run["pooled"]
        assert pooled["n"] == sum(j["n"] for j in jobs[1:])
        assert pooled["new"]["accuracy"] > pooled["shipped"]["accuracy"]  # the step is learnable
    table = learning_table(result)
    assert table.count("| pooled |") == 2 and "explore 15%" in table


def test_eval_learning_cli_json_keys_on_the_qwen3_records() -> None:
    result = CliRunner().invoke(
        app,
        [
            "eval-learning",
            "--records",
            "qwen3",
            "--cheap",
            "direct",
            "--expensive",
            "reasoning",
            "--jobs",
            "3",
            "--explore",
            "0.2",
            "--features",
            "signals-v1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"records", "questions", "cheap", "expensive", "n", "jobs", "share", "seed", "features", "runs"} <= set(out)
    assert out["n"] == 205 and out["runs"][0]["explore"] == 0.2
    row = out["runs"][0]["jobs"][1]
    assert {"job", "trained_on", "n", "new", "shipped", "random", "oracle", "new_minus_shipped"} <= set(row)


def test_eval_learning_rejects_bad_flags() -> None:
    bad = CliRunner().invoke(app, ["eval-learning", "--records", "qwen3", "--cheap", "a", "--expensive", "b"])
    assert bad.exit_code == 2 and "direct and reasoning" in bad.output
    rate = CliRunner().invoke(
        app, ["eval-learning", "--records", "qwen3", "--cheap", "direct", "--expensive", "reasoning", "--explore", "2"]
    )
    assert rate.exit_code == 2 and "in (0, 1)" in rate.output
