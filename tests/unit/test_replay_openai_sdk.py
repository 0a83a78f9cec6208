"""The replay server through the official ``openai`` SDK: what a client written for OpenAI (or vLLM) sees.

The server runs in-process (uvicorn on a socket bound to a free port, in a thread), with no latency.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
import uvicorn
from openai import AsyncOpenAI

from workers import data
from workers.data.prompts import format_mcq_prompt
from workers.replay.records import QWEN3_MODEL, load_default
from workers.replay.server import LatencyModel, create_app

QID = 10646  # a recorded Qwen3 computer-science question (as in test_replay.py)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(load_default(), LatencyModel(time_scale=0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # a condition with a deadline, not a fixed wait
        assert thread.is_alive() and time.monotonic() < deadline, "the replay server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def row() -> dict[str, Any]:
    return next(r for r in data.read_jsonl(data.QWEN3_THINK) if r["question_id"] == QID)


def messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": format_mcq_prompt(row["question"], row["options"])}]


NOTHINK = {"chat_template_kwargs": {"enable_thinking": False}}


async def test_a_chat_completion_parses(client: AsyncOpenAI, row: dict[str, Any]) -> None:
    before = int(time.time())
    out = await client.chat.completions.create(model=QWEN3_MODEL, messages=messages(row), extra_body=NOTHINK)
    assert out.object == "chat.completion" and out.model == QWEN3_MODEL
    assert out.id.startswith("chatcmpl-") and len(out.id) == len("chatcmpl-") + 32
    assert before <= out.created <= int(time.time())  # made now, not when the server started
    choice = out.choices[0]
    assert choice.message.content == f"The answer is ({row['nothink_pred']})."
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert out.usage is not None and out.usage.completion_tokens == row["nothink_n_tokens"]
    thinking = await client.chat.completions.create(model=QWEN3_MODEL, messages=messages(row))
    assert thinking.usage is not None and thinking.usage.completion_tokens == row["think_n_tokens"]
    assert "not stored" in (thinking.choices[0].message.model_extra or {})["reasoning_content"]


async def test_unknown_model_and_unknown_route_are_not_found(client: AsyncOpenAI, row: dict[str, Any]) -> None:
    with pytest.raises(openai.NotFoundError) as model:
        await client.chat.completions.create(model="no-such-model", messages=messages(row))
    assert model.value.status_code == 404
    assert (model.value.code, model.value.param) == ("model_not_found", "model")
    assert model.value.body == {
        "message": "The model `no-such-model` does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    with pytest.raises(openai.NotFoundError) as route:
        await client.embeddings.create(model=QWEN3_MODEL, input="hello")
    assert isinstance(route.value.body, dict)
    assert route.value.body["message"] == "Invalid URL (POST /v1/embeddings)"
    with pytest.raises(openai.NotFoundError) as card:
        await client.models.retrieve("no-such-model")
    assert card.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stop": ["\n"]}, "stop"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_it(
    client: AsyncOpenAI, row: dict[str, Any], extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=QWEN3_MODEL, messages=messages(row), **extra)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == param
    assert info.value.param == param and info.value.type == "invalid_request_error"


async def test_models_list_and_retrieve(client: AsyncOpenAI) -> None:
    listed = [m.id async for m in client.models.list()]
    assert listed[0] == QWEN3_MODEL and len(listed) == 30
    for name in (QWEN3_MODEL, "gemini-1.5-pro-002_5shots", "Qwen3-30B-A3B"):
        card = await client.models.retrieve(name)
        assert (card.id, card.object, card.owned_by) == (name, "model", "replay")


@pytest.mark.parametrize("thinking", [False, True])
async def test_streaming_adds_up_to_the_non_streamed_answer(
    client: AsyncOpenAI, row: dict[str, Any], thinking: bool
) -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": thinking}}
    whole = await client.chat.completions.create(model=QWEN3_MODEL, messages=messages(row), extra_body=extra)
    stream = await client.chat.completions.create(
        model=QWEN3_MODEL,
        messages=messages(row),
        extra_body=extra,
        stream=True,
        stream_options={"include_usage": True},
    )
    got = [chunk async for chunk in stream]
    assert len({c.id for c in got}) == 1 and got[0].id != whole.id
    assert all(c.object == "chat.completion.chunk" for c in got)
    *parts, last = got
    assert last.choices == [] and last.usage == whole.usage  # the usage chunk comes last
    assert all(c.usage is None for c in parts)
    assert parts[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in parts)
    assert content == whole.choices[0].message.content and len(parts) > 3
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in parts)
    assert reasoning == ((whole.choices[0].message.model_extra or {}).get("reasoning_content") or "")
    assert bool(reasoning) is thinking
    finishes = [c.choices[0].finish_reason for c in parts]
    assert finishes[-1] == whole.choices[0].finish_reason == "stop" and set(finishes[:-1]) == {None}


async def test_streaming_without_usage_and_with_logprobs(client: AsyncOpenAI, row: dict[str, Any]) -> None:
    whole = await client.chat.completions.create(
        model=QWEN3_MODEL, messages=messages(row), extra_body=NOTHINK, logprobs=True, top_logprobs=2
    )
    stream = await client.chat.completions.create(
        model=QWEN3_MODEL, messages=messages(row), extra_body=NOTHINK, logprobs=True, top_logprobs=2, stream=True
    )
    got = [chunk async for chunk in stream]
    assert all(c.usage is None and len(c.choices) == 1 for c in got)  # no usage chunk unless asked for
    assert whole.choices[0].logprobs is not None and whole.choices[0].logprobs.content is not None
    streamed = [t for c in got if c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert len(streamed) == 6  # "The", " answer", " is", " (", letter, ")."
    assert [t.model_dump() for t in streamed] == [t.model_dump() for t in whole.choices[0].logprobs.content]
    assert all(len(t.top_logprobs) >= 1 for t in streamed)
    assert "".join(c.choices[0].delta.content or "" for c in got) == whole.choices[0].message.content


async def test_identical_requests_get_distinct_ids_and_the_same_answer(
    client: AsyncOpenAI, row: dict[str, Any]
) -> None:
    outs = await asyncio.gather(
        *(
            client.chat.completions.create(model=QWEN3_MODEL, messages=messages(row), extra_body=NOTHINK)
            for _ in range(50)
        )
    )
    assert len({o.id for o in outs}) == 50
    assert {(o.choices[0].message.content, o.usage.completion_tokens if o.usage else None) for o in outs} == {
        (f"The answer is ({row['nothink_pred']}).", row["nothink_n_tokens"])
    }
