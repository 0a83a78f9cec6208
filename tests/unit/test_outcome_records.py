"""Outcome records on disk (JSONL, xz, file:line errors), their prompt text, the two-arm arrays, and the
converters (qwen3, 29 models, RouteLLM CSV, exploration) on hand-made and on the shipped data."""

from __future__ import annotations

import json
import lzma
import math
from pathlib import Path

import pytest

from schemas.batch import ChatBody
from schemas.outcomes import ArmOutcome, OutcomeRecord
from workers.data import MODEL_CORRECTNESS, read_csv
from workers.data.prompts import format_mcq_prompt
from workers.errors import InvalidInput
from workers.evaluation.convert import QWEN3_ARMS, convert
from workers.evaluation.outcomes import arms, read_outcomes, record_text, write_outcomes


def rec(rid: str, **outcomes: tuple[float, int | None]) -> OutcomeRecord:
    return OutcomeRecord(
        id=rid, prompt=f"p{rid}", outcomes={a: ArmOutcome(correct=c, tokens=t) for a, (c, t) in outcomes.items()}
    )


@pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.xz"])
def test_records_round_trip(tmp_path: Path, name: str) -> None:
    records = [rec("1", direct=(1.0, 10), reasoning=(0.0, 100)), rec("2", direct=(0.5, None))]
    assert write_outcomes(tmp_path / name, records) == 2
    if name.endswith(".xz"):
        assert (tmp_path / name).read_bytes()[:6] == b"\xfd7zXZ\x00"
    assert read_outcomes(tmp_path / name) == records


def test_a_bad_line_names_file_and_line(tmp_path: Path) -> None:
    good = rec("1", direct=(1.0, 1)).model_dump_json()
    path = tmp_path / "r.jsonl"
    path.write_text(f"{good}\n\n{{not json\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"r\.jsonl:3: not JSON"):
        read_outcomes(path)
    path.write_text(f'{good}\n{{"prompt": "x", "outcomes": {{"direct": {{"correct": 2}}}}}}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"r\.jsonl:2: not an outcome record: outcomes\.direct\.correct"):
        read_outcomes(path)
    path.write_text('{"question": "q", "prompt": "p", "outcomes": {"a": {"correct": 1}}}\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"r\.jsonl:1: .*exactly one of prompt, question"):
        read_outcomes(path)


def test_prompt_text_as_the_pipeline_sends_it() -> None:
    o = {"a": ArmOutcome(correct=1)}
    q = OutcomeRecord(question="What is 2+2?", options=["3", "4"], outcomes=o)
    assert record_text(q) == format_mcq_prompt("What is 2+2?", ["3", "4"])
    assert record_text(OutcomeRecord(question="Q?", choices=["x"], outcomes=o)) == format_mcq_prompt("Q?", ["x"])
    body = ChatBody.model_validate(
        {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    )
    assert record_text(OutcomeRecord(custom_id="c", body=body, outcomes=o)) == "hi"
    assert record_text(OutcomeRecord(prompt="as is ", outcomes=o)) == "as is "


def test_arms_skip_and_count_records_missing_an_arm() -> None:
    records = [
        rec("1", direct=(1.0, 10), reasoning=(0.0, 100)),
        rec("2", direct=(0.0, 20)),
        rec("3", direct=(0.0, 30), reasoning=(1.0, 300)),
    ]
    pair = arms(records, "direct", "reasoning")
    assert (pair.index, pair.skipped) == ([0, 2], 1)
    assert pair.cheap.tolist() == [1.0, 0.0] and pair.expensive.tolist() == [0.0, 1.0]
    assert pair.cheap_tokens is not None and pair.cheap_tokens.tolist() == [10.0, 30.0]
    records.append(rec("4", direct=(1.0, None), reasoning=(1.0, 5)))
    assert arms(records, "direct", "reasoning").cheap_tokens is None  # one record without tokens: no token cost
    with pytest.raises(InvalidInput, match="no record has arm 'nope'; arms: direct, reasoning"):
        arms(records, "direct", "nope")


# --- converters ------------------------------------------------------------------------------------------


def test_qwen3_shipped_records() -> None:
    done = convert("qwen3", ["qwen3"])
    assert len(done.records) == 205
    assert all(set(r.outcomes) == set(QWEN3_ARMS) for r in done.records)
    r = next(r for r in done.records if r.id == "10356")
    assert (r.category, r.answer, len(r.options or [])) == ("computer science", "B", 8)
    got = {a: (o.correct, o.tokens) for a, o in r.outcomes.items()}
    assert got == {
        "direct": (1.0, 118),
        "reasoning": (1.0, 453),
        "reasoning:high": (1.0, 453),
        "reasoning:medium": (1.0, 100),
        "reasoning:low": (1.0, 100),
    }
    # the recorded accuracies of the replay server's docstring: 0.829 full / medium, 0.785 low
    mean = {a: sum(x.outcomes[a].correct for x in done.records) / 205 for a in QWEN3_ARMS}
    assert [round(mean[a], 3) for a in ("reasoning", "reasoning:medium", "reasoning:low")] == [0.829, 0.829, 0.785]


def test_qwen3_a_record_without_shortened_runs_has_no_effort_arms(tmp_path: Path) -> None:
    row = {"question_id": 1, "question": "q", "options": ["a"], "answer": "A", "category": "math"}
    row |= {"nothink_correct": 0, "nothink_n_tokens": 5, "think_correct": 1, "think_n_tokens": 50}
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    [r] = convert("qwen3", [str(path)]).records
    assert set(r.outcomes) == {"direct", "reasoning", "reasoning:high"}


def test_models_shipped_records_for_two_models() -> None:
    keep = ["Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct_5shots"]  # either spelling
    done = convert("models", ["models"], models=keep)
    assert len(done.records) == 12032 and done.stats["arms"] == [
        "Meta-Llama-3_1-8B-Instruct",
        "Meta-Llama-3_1-70B-Instruct",
    ]
    row = next(read_csv(MODEL_CORRECTNESS))
    r = next(x for x in done.records if x.id == row["question_id"])
    big = r.outcomes["Meta-Llama-3_1-70B-Instruct"]
    assert big.correct == float(row["Meta-Llama-3_1-70B-Instruct_5shots__correct"])
    assert big.tokens == math.ceil(float(row["Meta-Llama-3_1-70B-Instruct_5shots__out_chars"]) / 4)
    assert (r.category, r.answer) == ("business", "I") and r.question and r.question.startswith("Typical advertising")
    with pytest.raises(InvalidInput, match="unknown model"):
        convert("models", ["models"], models=["gpt-9"])


def test_models_csv_path_skips_empty_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "question_id,a_5shots__correct,a_5shots__out_chars,b_5shots__correct,b_5shots__out_chars\n70,1,9,,\n71,,,,\n",
        encoding="utf-8",
    )
    done = convert("models", [str(path)])
    [r] = done.records
    assert r.id == "70" and {a: (o.correct, o.tokens) for a, o in r.outcomes.items()} == {"a": (1.0, 3)}
    assert done.stats["skipped_no_outcome"] == 1


def test_routellm_csv(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        'id,prompt,gpt-4_correct,mixtral_correct,gpt-4_tokens\nx1,"Hi, there",1,0.25,12\n,second,0,,\n,,1,1,\n',
        encoding="utf-8",
    )
    done = convert("routellm", [str(path)])
    assert done.stats == {"records": 2, "arms": ["gpt-4", "mixtral"], "skipped_empty": 1}
    a, b = done.records
    assert (a.id, a.prompt, a.outcomes["gpt-4"].tokens, a.outcomes["mixtral"].correct) == ("x1", "Hi, there", 12, 0.25)
    assert (b.id, set(b.outcomes)) == ("2", {"gpt-4"})
    path.write_text("prompt,m_correct\nq,1.5\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"r\.csv:2 m_correct: correctness 1.5 is outside \[0, 1\]"):
        convert("routellm", [str(path)])
    path.write_text("text,m_correct\nq,1\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="no column 'prompt'"):
        convert("routellm", [str(path)])
    assert convert("routellm", [str(path)], prompt_column="text").records[0].prompt == "q"


def test_exploration_exports_merge_and_drop_duplicate_ids(tmp_path: Path) -> None:
    one, two = tmp_path / "a.jsonl", tmp_path / "b.jsonl.xz"
    first = rec("j:1", direct=(1.0, 5), reasoning=(1.0, 50))
    write_outcomes(one, [first, rec("j:2", direct=(0.0, 5), reasoning=(1.0, 60))])
    write_outcomes(two, [rec("j:1", direct=(0.0, 1)), rec("j:3", direct=(1.0, 2), reasoning=(0.0, 9))])
    done = convert("exploration", [str(one), str(two)])
    assert [r.id for r in done.records] == ["j:1", "j:2", "j:3"] and done.records[0] == first
    assert done.stats["duplicates_dropped"] == 1
    with lzma.open(two, "at", encoding="utf-8") as f:
        f.write('{"id": "j:4", "prompt": "p", "outcomes": {}}\n')
    with pytest.raises(InvalidInput, match=r"b\.jsonl\.xz:3: not an outcome record: outcomes"):
        convert("exploration", [str(one), str(two)])


def test_convert_refuses_bad_usage() -> None:
    with pytest.raises(InvalidInput, match="--from must be one of"):
        convert("csv", ["x"])
    with pytest.raises(InvalidInput, match="takes one INPUT"):
        convert("qwen3", ["qwen3", "qwen3"])
    with pytest.raises(InvalidInput, match="--models only applies"):
        convert("qwen3", ["qwen3"], models=["a"])
