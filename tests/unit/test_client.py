import json
from typing import Any

import httpx
import pytest

from workers.inference.client import LLMClient, LLMFailed, RetryPolicy
from workers.settings import InferenceSettings

OK = {
    "id": "x",
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": "4"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


def client(responses: list[Any], max_attempts: int = 4) -> tuple[LLMClient, list[float], list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def sleep(s: float) -> None:
        sleeps.append(s)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return LLMClient(http, RetryPolicy(max_attempts, 0.1, 1.0), sleep=sleep), sleeps, sent


async def test_retries_transient_errors_then_succeeds() -> None:
    llm, sleeps, sent = client(
        [
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.ConnectError("reset"),
            httpx.Response(429, headers={"retry-after": "0.7"}, json={}),
            httpx.Response(200, json=OK),
        ]
    )
    c = await llm.complete("http://llm/v1", {"model": "m"})
    assert c.attempts == 4 and c.body["choices"][0]["message"]["content"] == "4"
    assert len(sent) == 4 and len(sleeps) == 3
    assert sleeps[2] >= 0.7  # Retry-After is a floor
    assert all(0 <= s <= 1.0 for s in sleeps)
    assert llm.retries == 3


async def test_gives_up_after_max_attempts() -> None:
    llm, sleeps, _ = client([httpx.Response(500, text="boom")] * 3, max_attempts=3)
    with pytest.raises(LLMFailed, match="gave up after 3 attempts: HTTP 500") as info:
        await llm.complete("http://llm/v1", {})
    assert info.value.attempts == 3 and info.value.status_code == 500 and len(sleeps) == 2


async def test_permanent_errors_fail_at_once() -> None:
    llm, sleeps, _ = client([httpx.Response(404, json={"message": "The model `x` does not exist."})])
    with pytest.raises(LLMFailed, match="does not exist") as info:
        await llm.complete("http://llm/v1", {})
    assert info.value.attempts == 1 and info.value.status_code == 404 and sleeps == []


def test_backoff_is_capped_full_jitter() -> None:
    p = RetryPolicy(10, 0.5, 4.0)
    assert p.delay(1, None, rand=lambda: 1.0) == 0.5
    assert p.delay(3, None, rand=lambda: 1.0) == 2.0
    assert p.delay(9, None, rand=lambda: 1.0) == 4.0
    assert p.delay(9, None, rand=lambda: 0.0) == 0.0
    assert p.delay(1, 30.0, rand=lambda: 0.0) == 4.0


def test_shards_cover_the_configured_connections() -> None:
    from workers.inference.client import MAX_SHARDS, make_http_clients, shard_count

    assert [shard_count(n) for n in (1, 4, 64, 65, 1000)] == [1, 4, 64, MAX_SHARDS, MAX_SHARDS] and MAX_SHARDS == 64
    inf = InferenceSettings(connect_timeout_s=1.0, read_timeout_s=2.0, concurrency=100, http_transport="httpcore")
    clients = make_http_clients(inf, None)
    assert len(clients) == 64
    pools = [c._transport._pool for c in clients]  # type: ignore[attr-defined]
    assert sum(p._max_connections for p in pools) >= 100 and max(p._max_connections for p in pools) == 2


def test_asyncio_transport_is_one_client_with_the_whole_limit() -> None:
    from workers.inference.client import make_http_clients
    from workers.inference.http.transport import AsyncioTransport

    (only,) = make_http_clients(InferenceSettings(connect_timeout_s=1.0, read_timeout_s=2.0, concurrency=100), "key")
    transport = only._transport  # type: ignore[attr-defined]
    assert isinstance(transport, AsyncioTransport) and transport.max_connections == 100
    assert transport.max_keepalive == 100 and only.headers["authorization"] == "Bearer key"
    assert only.timeout.connect == 1.0 and only.timeout.read == 2.0 and only.timeout.pool is None


async def test_requests_are_spread_round_robin_over_the_shards() -> None:
    seen: list[int] = []

    def handler_for(i: int) -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(i)
            return httpx.Response(200, json=OK)

        return handler

    shards = [httpx.AsyncClient(transport=httpx.MockTransport(handler_for(i))) for i in range(3)]
    llm = LLMClient(shards, RetryPolicy(1, 0.1, 1.0))
    for _ in range(7):
        assert (await llm.complete("http://x/v1", {"model": "m"})).body["choices"][0]["message"]["content"] == "4"
    assert seen == [0, 1, 2, 0, 1, 2, 0]


def test_encode_json_sends_what_httpx_json_would() -> None:
    from workers.inference.client import encode_json

    payload = {"model": "m", "messages": [{"role": "user", "content": 'Grüße, 世界 \u2028 "q"'}], "t": 0.5, "n": None}
    assert encode_json(payload) == httpx.Request("POST", "http://x/", json=payload).content
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})


async def test_llm_http_client_keeps_cookies_only_when_set() -> None:
    from workers.inference.client import LLMHttpClient

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        if request.url.path == "/login":
            return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"}, json=OK)
        return httpx.Response(200, json=OK)

    http = LLMHttpClient(transport=httpx.MockTransport(handler), cookies={"pre": "1"})
    await http.post("http://llm/v1/chat/completions", content=b"{}")
    assert dict(http.cookies) == {"pre": "1"}
    await http.post("http://llm/login", content=b"{}")
    await http.post("http://llm/v1/chat/completions", content=b"{}")
    assert dict(http.cookies) == {"pre": "1", "session": "abc"}
    assert seen == ["pre=1", "pre=1", "pre=1; session=abc"]
    http.cookies = {"other": "2"}
    await http.get("http://llm/x")
    assert seen[-1] == "other=2"


async def test_complete_posts_compact_json_to_the_parsed_url() -> None:
    got: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200, content=json.dumps(OK).encode())

    llm = LLMClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)), RetryPolicy(1, 0.1, 1.0))
    c = await llm.complete("http://llm:8000/v1/", {"model": "m", "messages": [{"role": "user", "content": "é"}]})
    assert c.body == OK and c.attempts == 1
    (req,) = got
    assert str(req.url) == "http://llm:8000/v1/chat/completions" and req.headers["content-type"] == "application/json"
    assert req.content == '{"model":"m","messages":[{"role":"user","content":"é"}]}'.encode()


def test_retry_policy_is_built_from_the_settings() -> None:
    assert RetryPolicy.from_settings(InferenceSettings()) == RetryPolicy(4, 0.5, 20.0)
    inf = InferenceSettings(max_attempts=6, backoff_base_s=0.1, backoff_max_s=2.0)
    assert RetryPolicy.from_settings(inf) == RetryPolicy(6, 0.1, 2.0)
