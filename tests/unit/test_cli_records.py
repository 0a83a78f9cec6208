"""``thinkroute records convert``, ``eval --records``, ``calibrate --records`` and ``eval-cascade --records``
through typer's CliRunner, on the shipped Qwen3 records (the classifier never trained on their questions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workers.cli.app import app
from workers.evaluation.outcomes import read_outcomes, write_outcomes
from workers.evaluation.report import default_split, select_split

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def no_thinkroute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("THINKROUTE_") and var != "THINKROUTE_CACHE_DIR":
            monkeypatch.delenv(var)


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("records") / "qwen3.jsonl.xz"
    result = CliRunner().invoke(app, ["records", "convert", "--from", "qwen3", "qwen3", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["records"] == 205 and stats["arms"][:2] == ["direct", "reasoning"]
    return out


def test_convert_writes_records(qwen3: Path) -> None:
    records = read_outcomes(qwen3)
    assert len(records) == 205 and default_split(records) == "all"


def test_convert_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["records", "convert", "--from", "exploration", str(bad), "-o", "x.jsonl"])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}:1: not an outcome record: outcomes")


def test_eval_records_json(qwen3: Path) -> None:
    argv = ["eval", "--records", str(qwen3), "--cheap", "direct", "--expensive", "reasoning"]
    result = CliRunner().invoke(app, [*argv, "--resamples", "100", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["records"] == {"in_file": 205, "in_split": 205, "used": 205, "skipped_missing_arm": 0}
    assert r["split"] == "all" and r["cost"] == "mean tokens per prompt"
    # the recorded arms: 0.790 thinking off, 0.829 on (mean tokens 318 / 1313)
    assert r["arms"]["cheap"]["accuracy"]["value"] == 0.7902 and r["arms"]["expensive"]["accuracy"]["value"] == 0.8293
    assert [p["share"] for p in r["at_shares"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert {"router", "random", "oracle"} <= set(r["cost_to_95"])
    text = CliRunner().invoke(app, [*argv, "--resamples", "20", "--cost", "share"])
    assert text.exit_code == 0, text.output
    assert "cost: share of prompts sent to the expensive arm (--cost share" in text.stdout
    no_tokens = [
        r.model_copy(update={"outcomes": {a: o.model_copy(update={"tokens": None}) for a, o in r.outcomes.items()}})
        for r in read_outcomes(qwen3)
    ]
    bare = qwen3.with_name("bare.jsonl")
    write_outcomes(bare, no_tokens)
    text = CliRunner().invoke(
        app, ["eval", "--records", str(bare), "--cheap", "direct", "--expensive", "reasoning", "--resamples", "20"]
    )
    assert text.exit_code == 0, text.output
    assert "no token counts on both arms: cost is the share of prompts sent to the expensive arm" in text.stdout


def test_eval_records_needs_both_arms_and_known_ones(qwen3: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--records", str(qwen3), "--cheap", "direct"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --records needs --cheap ARM and --expensive ARM")
    result = CliRunner().invoke(app, ["eval", "--records", str(qwen3), "--cheap", "direct", "--expensive", "gpt"])
    assert result.exit_code == 2 and "no record has arm 'gpt'" in result.stderr


def test_calibrate_records_hits_the_share(qwen3: Path, tmp_path: Path) -> None:
    out = tmp_path / "policy.yaml"
    argv = ["calibrate", "--records", str(qwen3), "--cheap", "direct", "--expensive", "reasoning"]
    result = CliRunner().invoke(app, [*argv, "--share", "0.3", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert abs(info["achieved"]["expensive_share"] - 0.3) <= 1 / 205
    assert yaml.safe_load(out.read_text())["reasoning"]["threshold"] == info["threshold"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "give --share S" in result.stderr


def test_eval_cascade_refuses_records_and_says_why(qwen3: Path) -> None:
    result = CliRunner().invoke(app, ["eval-cascade", "--records", str(qwen3)])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: eval-cascade cannot read outcome records") and "confidence" in line


def test_models_records_default_to_the_heldout_split(tmp_path: Path) -> None:
    from workers.evaluation.convert import convert

    done = convert("models", ["models"], models=["Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"])
    assert default_split(done.records) == "heldout"
    held = select_split(done.records, "heldout")
    train = select_split(done.records, "train")
    assert len(held) + len(train) == 12032 and 0.15 < len(held) / 12032 < 0.25
    from workers.evaluation.heldout import heldout_items

    items = heldout_items(13)
    assert {r.id for r in held} == {str(q) for it in items for q in it.question_ids}
    path = tmp_path / "few.jsonl"
    write_outcomes(path, held[:3])
    assert len(read_outcomes(path)) == 3
