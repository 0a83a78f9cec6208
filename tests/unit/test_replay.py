"""The replay server answers like vLLM, from the recorded MMLU-Pro outputs."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from loadgen.samples import MMLU_PRO_200, SAMPLES_DIR, build_samples
from workers import data
from workers.data.prompts import format_mcq_prompt
from workers.replay.answer import ANSWER_TOKENS, SYNTHETIC_PREFIX
from workers.replay.records import PROXY_FALLBACK, PROXY_NOTHINK, PROXY_THINK, QWEN3_MODEL, ReplayData, load_default
from workers.replay.server import LatencyModel, create_app

QID = 10646  # a recorded Qwen3 computer-science question: right with thinking, wrong without


@pytest.fixture(scope="module")
def replay() -> ReplayData:
    return load_default()


@pytest.fixture(scope="module")
def client(replay: ReplayData) -> Iterator[TestClient]:
    with TestClient(create_app(replay, LatencyModel(time_scale=0))) as c:
        yield c


@pytest.fixture(scope="module")
def qwen3_row() -> dict[str, Any]:
    return next(r for r in data.read_jsonl(data.QWEN3_THINK) if r["question_id"] == QID)


@pytest.fixture(scope="module")
def mmlu() -> dict[int, dict[str, Any]]:
    return {r["question_id"]: r for r in data.read_jsonl(data.MMLU_PRO_TEST)}


def _prompt(row: dict[str, Any]) -> str:
    return format_mcq_prompt(row["question"], row["options"])


def _chat(client: TestClient, content: str, model: str = QWEN3_MODEL, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_qwen3_thinking_off_replays_the_nothink_record(client: TestClient, qwen3_row: dict[str, Any]) -> None:
    out = _chat(client, _prompt(qwen3_row), chat_template_kwargs={"enable_thinking": False})
    message = out["choices"][0]["message"]
    assert message["content"] == f"The answer is ({qwen3_row['nothink_pred']})."
    assert message["reasoning_content"] is None
    assert out["usage"]["completion_tokens"] == qwen3_row["nothink_n_tokens"]
    assert out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["system_fingerprint"] == "replay:record"
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")


def test_qwen3_thinking_on_replays_the_think_record(client: TestClient, qwen3_row: dict[str, Any]) -> None:
    out = _chat(client, _prompt(qwen3_row), chat_template_kwargs={"enable_thinking": True})
    message = out["choices"][0]["message"]
    assert message["content"] == f"The answer is ({qwen3_row['think_pred']})."
    assert "not stored" in message["reasoning_content"]
    usage = out["usage"]
    assert usage["completion_tokens"] == qwen3_row["think_n_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == qwen3_row["think_n_tokens"] - ANSWER_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == math.ceil(len(_prompt(qwen3_row)) / 4) + 8


def test_thinking_is_on_when_enable_thinking_is_absent(client: TestClient, qwen3_row: dict[str, Any]) -> None:
    out = _chat(client, _prompt(qwen3_row))
    assert out["usage"]["completion_tokens"] == qwen3_row["think_n_tokens"]
    assert out["choices"][0]["message"]["reasoning_content"] is not None


@pytest.mark.parametrize(
    ("effort", "field"), [("low", "think_bias_19_5"), ("medium", "think_bias_19"), ("high", "think")]
)
def test_reasoning_effort_picks_the_shortened_runs(
    client: TestClient, qwen3_row: dict[str, Any], effort: str, field: str
) -> None:
    out = _chat(client, _prompt(qwen3_row), reasoning_effort=effort)
    assert out["usage"]["completion_tokens"] == qwen3_row[f"{field}_n_tokens"]
    assert out["choices"][0]["message"]["content"] == f"The answer is ({qwen3_row['answer']})."


def test_max_tokens_below_the_record_is_cut(client: TestClient, qwen3_row: dict[str, Any]) -> None:
    out = _chat(client, _prompt(qwen3_row), max_tokens=100)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 100
    assert out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 100
    assert out["choices"][0]["message"]["content"] == ""
    nothink = _chat(
        client, _prompt(qwen3_row), max_completion_tokens=50, chat_template_kwargs={"enable_thinking": False}
    )
    assert nothink["choices"][0]["finish_reason"] == "length"
    assert nothink["usage"]["completion_tokens"] == 50
    assert "The answer is" not in nothink["choices"][0]["message"]["content"]


def test_one_of_the_29_models_returns_its_recorded_letter(client: TestClient, mmlu: dict[int, dict[str, Any]]) -> None:
    model = "gemini-1.5-pro-002_5shots"
    preds = {r["question_id"]: r for r in data.read_csv(data.MODEL_PREDS)}
    correctness = {r["question_id"]: r for r in data.read_csv(data.MODEL_CORRECTNESS)}
    qid = next(q for q in ("70", "71", "72", "73") if preds[q][f"{model}__pred"])
    for name in (model, model.removesuffix("_5shots")):
        out = _chat(client, _prompt(mmlu[int(qid)]), model=name, chat_template_kwargs={"thinking": True})
        assert out["model"] == name
        assert out["choices"][0]["message"]["content"] == f"The answer is ({preds[qid][f'{model}__pred']})."
        assert out["choices"][0]["message"]["reasoning_content"] is None
        assert out["usage"]["completion_tokens"] == math.ceil(int(correctness[qid][f"{model}__out_chars"]) / 4)
        assert out["system_fingerprint"] == "replay:record"


def test_qwen3_outside_the_recorded_questions_uses_the_proxies(
    client: TestClient, replay: ReplayData, mmlu: dict[int, dict[str, Any]]
) -> None:
    qid = next(q for q, r in sorted(mmlu.items()) if r["category"] == "law" and q in replay.models[PROXY_THINK])
    think = _chat(client, _prompt(mmlu[qid]))
    assert think["system_fingerprint"] == f"replay:proxy:{PROXY_THINK}"
    expected = math.ceil(replay.models[PROXY_THINK][qid].tokens * replay.scale[PROXY_THINK]["think"])
    assert think["usage"]["completion_tokens"] == expected
    nothink = _chat(client, _prompt(mmlu[qid]), chat_template_kwargs={"enable_thinking": False})
    assert nothink["system_fingerprint"] == f"replay:proxy:{PROXY_NOTHINK}"
    missing = next(q for q in sorted(mmlu) if q not in replay.models[PROXY_THINK] and q not in replay.qwen3)
    fallback = _chat(client, _prompt(mmlu[missing]))
    assert fallback["system_fingerprint"] in (f"replay:proxy:{PROXY_NOTHINK}", f"replay:proxy:{PROXY_FALLBACK}")


def test_proxy_scale_matches_qwen3_mean_tokens_on_the_overlap(replay: ReplayData) -> None:
    for proxy in (PROXY_THINK, PROXY_NOTHINK):
        overlap = [q for q in replay.qwen3 if q in replay.models[proxy]]
        for mode in ("think", "nothink"):
            scaled = sum(replay.models[proxy][q].tokens * replay.scale[proxy][mode] for q in overlap)
            assert scaled / len(overlap) == pytest.approx(replay.qwen3_mean[mode])
    described = replay.describe()
    assert described["qwen3_overlap_accuracy"]["think"] == pytest.approx(0.829, abs=1e-3)
    assert set(described["proxy_scale_factors"]) >= {PROXY_THINK, PROXY_NOTHINK}


def test_unknown_text_gets_a_deterministic_synthetic_answer(client: TestClient) -> None:
    text = "Write a limerick about a cat who learns to play the trombone."
    first = client.post(
        "/v1/chat/completions", json={"model": QWEN3_MODEL, "messages": [{"role": "user", "content": text}]}
    )
    second = client.post(
        "/v1/chat/completions", json={"model": QWEN3_MODEL, "messages": [{"role": "user", "content": text}]}
    )
    out, again = first.json(), second.json()
    assert out["id"] != again["id"]  # each response has its own id; everything else is the same
    assert {k: v for k, v in out.items() if k not in ("id", "created")} == {
        k: v for k, v in again.items() if k not in ("id", "created")
    }
    assert out["system_fingerprint"] == "replay:synthetic"
    assert out["choices"][0]["message"]["content"].startswith(SYNTHETIC_PREFIX)
    other = _chat(client, text + " Make it rhyme.")
    assert other["usage"] != out["usage"] or other["id"] != out["id"]


def test_unknown_model_is_a_404_in_openai_shape(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `nope` does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_malformed_bodies_are_400(client: TestClient) -> None:
    cases = [(b"{not json", None), (b"[]", None), (b'{"model": "Qwen/Qwen3-30B-A3B", "messages": []}', "messages")]
    for bad, param in cases:
        response = client.post("/v1/chat/completions", content=bad, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert set(response.json()) == {"error"}
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert response.json()["error"]["param"] == param


def test_models_health_and_stats(client: TestClient, replay: ReplayData) -> None:
    assert client.get("/health").status_code == 200
    listing = client.get("/v1/models").json()
    ids = [card["id"] for card in listing["data"]]
    assert listing["object"] == "list" and ids[0] == QWEN3_MODEL and len(ids) == 30
    assert "gemini-1.5-pro-002_5shots" in ids
    assert all(card["owned_by"] == "replay" and card["object"] == "model" for card in listing["data"])
    stats = client.get("/stats").json()
    assert stats["requests"] == sum(stats["by_source"].values()) == sum(stats["by_mode"].values())
    assert stats["requests"] > 0


def test_latency_model_arithmetic() -> None:
    model = LatencyModel(time_scale=2.0, prefill_s_per_1k=0.05, decode_tok_per_s=80.0)
    assert model.delay_s(2000, 400) == pytest.approx(2.0 * (0.05 * 2 + 400 / 80))
    assert LatencyModel(time_scale=0).delay_s(10_000, 10_000) == 0
    with pytest.raises(ValueError):
        LatencyModel(decode_tok_per_s=0)


def test_every_sample_line_is_recognised(replay: ReplayData) -> None:
    path = Path(SAMPLES_DIR) / MMLU_PRO_200
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 200
    categories: Counter[str] = Counter()
    for line in lines:
        record = replay.find(line["body"]["messages"][-1]["content"])
        assert record is not None and line["custom_id"] == f"mmlu-pro-{record.question_id}"
        categories[record.category] += 1
        if record.category == "computer science":
            assert record.question_id in replay.qwen3
    assert len(categories) == 14 and min(categories.values()) >= 14
    assert build_samples()[MMLU_PRO_200] == lines  # the committed file is what the generator writes


def test_find_accepts_other_wrappers(replay: ReplayData, qwen3_row: dict[str, Any]) -> None:
    question = qwen3_row["question"]
    wrapped = f"My professor asked this:\n  {'  '.join(question.split())}\nWhat would you answer?"
    for text in (question, wrapped, format_mcq_prompt(question, qwen3_row["options"], instruction=False)):
        record = replay.find(text)
        assert record is not None and record.question_id == QID
    assert replay.find("What is the capital of Australia?") is None


def test_other_qwen3_records_file_can_be_replayed(tmp_path: Path, qwen3_row: dict[str, Any]) -> None:
    own = {**qwen3_row, "question_id": 990001, "question": "Which sorting algorithm did the replay test invent?"}
    own.update(nothink_n_tokens=42, nothink_pred="C")
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(qwen3_row) + "\n" + json.dumps(own) + "\n", encoding="utf-8")
    replay = ReplayData.load(path)
    assert set(replay.qwen3) == {QID, 990001}
    with TestClient(create_app(replay, LatencyModel(time_scale=0))) as c:
        out = _chat(c, _prompt(own), chat_template_kwargs={"enable_thinking": False})
    assert out["usage"]["completion_tokens"] == 42
    assert out["choices"][0]["message"]["content"] == "The answer is (C)."


def test_completion_bytes_and_headers_are_what_jsonresponse_sends(
    client: TestClient, qwen3_row: dict[str, Any]
) -> None:
    from starlette.responses import JSONResponse

    body = {"model": QWEN3_MODEL, "messages": [{"role": "user", "content": _prompt(qwen3_row)}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.content == JSONResponse(response.json()).body
    assert int(response.headers["content-length"]) == len(response.content)
    wrong_method = client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["message"] == "GET /v1/chat/completions: Method Not Allowed"
    bad = client.post("/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
