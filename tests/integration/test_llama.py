"""The pipeline against a real third-party OpenAI-compatible server: llama.cpp (llama-cpp-python) on SmolLM2-135M.

What it checks that the replay server cannot: usage tokens as another server counts them, a server that
serialises requests under concurrent load, its own error bodies (a context overflow), its keep-alive
behaviour, over both HTTP transports. What it cannot: thinking (SmolLM2 has no thinking mode: reasoning tokens
are always 0; a Qwen3/DeepSeek/gpt-oss reasoning switch would be sent and ignored), and a meaningful
confidence escalation (it returns log-probabilities, but a 135M model rarely writes a well-formed answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.chat import ChatBody
from schemas.messages import DeadLetter
from tests.integration.helpers import assert_exact_totals, read_topic, running, submit_requests
from tests.integration.llama import MODEL_ALIAS, N_CTX, established_peers
from workers.inference.client import LLMClient, RetryPolicy, make_http_clients
from workers.inference.serve import serve_inference
from workers.local.services import Service
from workers.router.serve import serve_router
from workers.settings import HttpTransport, Settings
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest
from workers.submit.jobs import summary, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.llama]
TRANSPORTS: list[HttpTransport] = ["asyncio", "httpcore"]
MAX_TOKENS = 12
OVERFLOW_ID = "too-long"


def small_requests(n: int) -> list[InputRequest]:
    """``n`` short prompts (prompt evaluation dominates a request on this CPU build: a few short questions keep
    the tier fast) for SmolLM2 (no reasoning switch: family none), ``MAX_TOKENS`` each."""
    questions = [f"What is {i} plus {i + 3}? Answer with the number." for i in range(n)]
    return [
        InputRequest(
            i + 1,
            f"q-{i}",
            ChatBody.model_validate(
                {"model": MODEL_ALIAS, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": q}]}
            ),
        )
        for i, q in enumerate(questions)
    ]


def overflow_request(line: int) -> InputRequest:
    """A prompt of about 2 x n_ctx tokens: the server refuses it before any inference."""
    body = {"model": MODEL_ALIAS, "max_tokens": 8, "messages": [{"role": "user", "content": "word " * (2 * N_CTX)}]}
    return InputRequest(line, OVERFLOW_ID, ChatBody.model_validate(body))


def on_llama(settings: Settings, llama: Service, transport: HttpTransport, concurrency: int) -> Settings:
    inference = settings.inference.model_copy(update={"http_transport": transport, "concurrency": concurrency})
    return settings.model_copy(update={"llm_base_url": f"http://{llama.address}/v1", "inference": inference})


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_job_through_the_pipeline_counts_llamas_tokens(
    settings: Settings, artifact: Path, redis: Redis, llama_server: Service, transport: HttpTransport
) -> None:
    # 10 prompts, 4 in flight against a server that answers one at a time, plus one it refuses (too long)
    s = on_llama(settings, llama_server, transport, concurrency=4)
    requests = small_requests(10)
    requests.append(overflow_request(max(r.line for r in requests) + 1))
    store = Store(redis)
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        meta = await submit_requests(s, store, requests, f"llama-{transport}")
        await wait_for_job(store, meta, check=w.check, timeout_s=240)
    results = {r.custom_id: r for r in await assert_exact_totals(store, meta.job_id, 10, 1)}
    done = [r for cid, r in results.items() if cid != OVERFLOW_ID]
    for r in done:
        assert r.status == "completed" and r.http_status == 200 and r.attempts == 1, r
        assert r.response_body is not None
        usage: dict[str, Any] = r.response_body["usage"]  # type: ignore[assignment]
        assert r.usage.prompt_tokens == usage["prompt_tokens"]
        assert r.usage.completion_tokens == usage["completion_tokens"]
        assert r.usage.prompt_tokens > 0 and 1 <= r.usage.completion_tokens <= MAX_TOKENS
        assert r.usage.reasoning_tokens == 0  # no thinking mode
        assert r.model == MODEL_ALIAS and r.answer
    got = await summary(store, meta)
    assert got["tokens"]["prompt"] == sum(r.usage.prompt_tokens for r in results.values())
    assert got["tokens"]["completion"] == sum(r.usage.completion_tokens for r in done)
    assert (got["completed"], got["failed"], got["state"]) == (10, 1, "done")

    # the refusal: permanent (one attempt, no retries), the server's status and error body kept as sent
    bad = results[OVERFLOW_ID]
    assert (bad.status, bad.http_status, bad.attempts) == ("failed", 400, 1)
    assert bad.response_body is not None
    error: dict[str, Any] = bad.response_body["error"]  # type: ignore[assignment]
    assert error["code"] == "context_length_exceeded" and f"maximum context length is {N_CTX}" in error["message"]
    assert (bad.error or "").startswith("HTTP 400: This model's maximum context length")
    assert bad.usage.prompt_tokens == bad.usage.completion_tokens == 0
    [record] = await read_topic(s.kafka_bootstrap or "", s.topics.dead, 1)
    dead = DeadLetter.model_validate_json(record.value)
    assert dead.request_id == f"{meta.job_id}/{OVERFLOW_ID}" and "HTTP 400" in dead.reason


@asynccontextmanager
async def llm_client(s: Settings) -> AsyncIterator[LLMClient]:
    """The inference worker's LLM client on ``s`` (its HTTP clients closed on exit)."""
    clients = make_http_clients(s.inference, None)
    try:
        yield LLMClient(clients, RetryPolicy.from_settings(s.inference))
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_concurrent_requests_queue_on_the_server_and_all_complete(
    settings: Settings, llama_server: Service, transport: HttpTransport
) -> None:
    s = on_llama(settings, llama_server, transport, concurrency=6)
    url = s.llm_url("direct", MODEL_ALIAS)
    payloads = [
        {
            "model": MODEL_ALIAS,
            "max_tokens": 6,
            "logprobs": True,
            "top_logprobs": 1,  # without it llama-cpp-python 0.3.36 answers "logprobs": null
            "messages": [{"role": "user", "content": f"Count from {i} to {i + 5}."}],
        }
        for i in range(6)
    ]
    async with llm_client(s) as client:
        answers = await asyncio.gather(*(client.complete(url, p) for p in payloads))
    # one at a time on the server, none refused or retried
    assert [(a.status_code, a.attempts) for a in answers] == [(200, 1)] * 6 and client.retries == 0
    for a in answers:
        choice = a.body["choices"][0]
        assert 1 <= a.body["usage"]["completion_tokens"] <= 6
        # log-probabilities come back when asked: confidence escalation has something to read
        assert len(choice["logprobs"]["content"]) == a.body["usage"]["completion_tokens"]
        assert all(t["logprob"] <= 0 for t in choice["logprobs"]["content"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sequential_requests_reuse_one_connection(
    settings: Settings, llama_server: Service, transport: HttpTransport
) -> None:
    s = on_llama(settings, llama_server, transport, concurrency=1)
    url = s.llm_url("direct", MODEL_ALIAS)
    before = established_peers(llama_server.port)
    seen: list[set[int]] = []
    async with llm_client(s) as client:
        for i in range(4):
            payload = {"model": MODEL_ALIAS, "max_tokens": 4, "messages": [{"role": "user", "content": f"Say {i}."}]}
            assert (await client.complete(url, payload)).status_code == 200
            seen.append(established_peers(llama_server.port) - before)
    # the server holds one connection of ours open after each answer, the same one every time
    assert len(seen[0]) == 1 and all(ports == seen[0] for ports in seen), seen
