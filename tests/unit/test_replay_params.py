"""What the replay server honours, accepts without effect, or refuses (workers.replay.params), over HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from workers.replay.answer import Recorded, ReplayAnswer
from workers.replay.logprobs import modelled_logprobs
from workers.replay.records import QWEN3_MODEL, load_default
from workers.replay.server import LatencyModel, create_app
from workers.replay.stream import pieces

MESSAGES = [{"role": "user", "content": "Write a limerick about a trombone."}]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(load_default(), LatencyModel(time_scale=0))) as c:
        yield c


def post(client: TestClient, **extra: Any) -> Any:
    return client.post("/v1/chat/completions", json={"model": QWEN3_MODEL, "messages": MESSAGES, **extra})


def same_reply(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in ("id", "created")} == {
        k: v for k, v in b.items() if k not in ("id", "created")
    }


def test_sampling_controls_are_accepted_and_change_nothing(client: TestClient) -> None:
    plain = post(client).json()
    sampled = post(
        client,
        temperature=1.3,
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        top_k=20,
        min_p=0.05,
        repetition_penalty=1.1,
        user="u-1",
        n=1,
        response_format={"type": "text"},
        stream=False,
        logprobs=None,
    )
    assert sampled.status_code == 200, sampled.text
    assert same_reply(plain, sampled.json())


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        ({"n": 3}, "n", "n > 1 is not supported: the replay server has one recorded output per prompt"),
        ({"n": 0}, "n", "n must be a positive integer"),
        ({"response_format": {"type": "json_object"}}, "response_format", "response_format json_object is"),
        ({"response_format": "json"}, "response_format", "response_format only type text is not supported"),
        ({"stop": "\n"}, "stop", "stop is not supported by the replay server"),
        ({"logit_bias": {"1": 5}}, "logit_bias", "logit_bias is not supported"),
        ({"frobnicate": True}, "frobnicate", "frobnicate is not supported"),
        ({"temperature": 2.5}, "temperature", "temperature must be between 0.0 and 2.0"),
        ({"temperature": "hot"}, "temperature", "temperature must be a number"),
        ({"repetition_penalty": -1}, "repetition_penalty", "repetition_penalty must be >= 0.0"),
        ({"seed": 1.5}, "seed", "seed must be an integer"),
        ({"user": 5}, "user", "user must be a string"),
        ({"logprobs": "yes"}, "logprobs", "logprobs must be a boolean"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "top_logprobs must be an integer from 0 to 20"),
        ({"top_logprobs": 1}, "top_logprobs", "top_logprobs requires logprobs: true"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "stream_options is only allowed when"),
        ({"stream": True, "stream_options": {"continuous": 1}}, "stream_options.continuous", "stream_options.c"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage", "stream_options.i"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens / max_completion_tokens must be a positive integer"),
        ({"reasoning_effort": "max"}, "reasoning_effort", "reasoning_effort must be one of low, medium, high"),
        ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs.enable_thinking", "chat_"),
        ({"messages": [{"content": "no role"}]}, "messages[0]", "each message must be an object"),
        ({"model": 3}, "model", "model must be a string"),
    ],
)
def test_refusals_name_the_parameter(client: TestClient, extra: dict[str, Any], param: str, message: str) -> None:
    response = post(client, **extra)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["type"], error["code"]) == (param, "invalid_request_error", None)
    assert error["message"].startswith(message)


def test_top_logprobs_lists_the_modelled_alternatives() -> None:
    models = {
        "a": {1: Recorded("B", 10)},
        "b": {1: Recorded("B", 10)},
        "c": {1: Recorded("C", 10)},
        "d": {1: Recorded(None, 10)},
        "me": {1: Recorded("C", 10)},
    }
    answer = ReplayAnswer("The answer is (C).", None, 20, 10, 0, "record", 1, "C")
    plain = modelled_logprobs(models, answer, "me")
    assert all(t["top_logprobs"] == [] for t in plain["content"])
    ranked = modelled_logprobs(models, answer, "me", top_logprobs=5)
    assert [t["logprob"] for t in ranked["content"]] == [t["logprob"] for t in plain["content"]]
    by_token = {t["token"]: t for t in ranked["content"]}
    # 3 recorded models with a letter (d has none, me is the answering model): B twice, C once
    assert by_token["C"]["logprob"] == round(math.log(2 / 5), 6)
    assert by_token["C"]["top_logprobs"] == [
        {"token": "B", "logprob": round(math.log(2 / 5), 6), "bytes": [66]},
        {"token": "C", "logprob": round(math.log(2 / 5), 6), "bytes": [67]},
    ]
    assert by_token[" answer"]["top_logprobs"] == [{"token": " answer", "logprob": 0.0, "bytes": list(b" answer")}]
    assert sum(math.exp(e["logprob"]) for e in by_token["C"]["top_logprobs"]) <= 1
    one = modelled_logprobs(models, answer, "me", top_logprobs=1)
    assert [e["token"] for e in next(t for t in one["content"] if t["token"] == "C")["top_logprobs"]] == ["B"]


def test_a_raw_stream_is_server_sent_events_ending_in_done(client: TestClient) -> None:
    whole = post(client, max_tokens=5).json()
    response = post(client, max_tokens=5, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert chunks[-1] == {
        "id": chunks[0]["id"],
        "object": "chat.completion.chunk",
        "created": chunks[0]["created"],
        "model": QWEN3_MODEL,
        "system_fingerprint": "replay:synthetic",
        "choices": [],
        "usage": whole["usage"],
    }
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == ""  # cut in thinking
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks[:-1])
    assert reasoning == whole["choices"][0]["message"]["reasoning_content"]


def test_pieces_keep_every_character() -> None:
    assert pieces("The answer is (B).") == ["The ", "answer ", "is ", "(B)."]
    assert pieces("  two\n lines  ") == ["  ", "two\n ", "lines  "]
    assert pieces("") == [] and pieces(None) == []


def test_an_internal_error_is_a_500_in_openais_shape() -> None:
    class Broken:
        def resolve_model(self, name: str) -> str:
            raise RuntimeError("the index is gone")

    app = create_app(Broken(), LatencyModel(time_scale=0))  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as broken:
        response = broken.post("/v1/chat/completions", json={"model": QWEN3_MODEL, "messages": MESSAGES})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"message": "internal error: RuntimeError", "type": "server_error", "param": None, "code": None}
    }


def test_a_paced_stream_counts_in_flight_and_sends_the_same_chunks() -> None:
    app = create_app(load_default(), LatencyModel(time_scale=1e-4))  # a few milliseconds of modelled latency
    with TestClient(app) as paced:
        response = post(paced, stream=True, stream_options={"include_usage": True})
        stats = paced.get("/stats").json()
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(e.removeprefix("data: ")) for e in response.text.split("\n\n")[:-2]]
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert (stats["requests"], stats["in_flight"], stats["max_in_flight"]) == (1, 0, 1)
