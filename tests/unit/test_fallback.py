"""Endpoint selection: the primary, its breaker, the fallback (real LLMClients on httpx's MockTransport, a fake
clock); and the worker's wiring of it (payload per model family, the result's ``answered_by``, metrics)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka.structs import ConsumerRecord

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import PromptMessage, RoutedMessage
from schemas.records import AnsweredBy, RequestResult
from tests.factories import route_decision
from workers.inference.breaker import Breakers
from workers.inference.client import Completion, LLMClient, LLMFailed, RetryPolicy
from workers.inference.fallback import Endpoints, Fallback, public_url
from workers.inference.results import completed
from workers.inference.worker import InferenceWorker
from workers.runtime.metrics import WorkerMetrics
from workers.settings import InferenceSettings, Settings, Topics
from workers.store.integrity import Verdict
from workers.submit.output import output_line

PRIMARY, FALLBACK = "http://primary/v1", "http://fallback/v1"


def ok(model: str) -> httpx.Response:
    body = {
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": "B"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    return httpx.Response(200, json=body)


@dataclass
class Backends:
    """Both servers behind one MockTransport: ``status[host]`` is what each answers (200: a completion)."""

    status: dict[str, int] = field(default_factory=lambda: {"primary": 200, "fallback": 200})
    hits: Counter[str] = field(default_factory=Counter)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hits[host] += 1
        payload = json.loads(request.content)
        self.sent.append((host, payload))
        code = self.status[host]
        return ok(payload["model"]) if code == 200 else httpx.Response(code, json={"error": {"message": "x"}})

    def client(self, attempts: int) -> LLMClient:
        async def no_sleep(_: float) -> None:
            return None

        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        return LLMClient(http, RetryPolicy(attempts, 0.01, 0.01), sleep=no_sleep)


@dataclass
class Clock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t


class Events:
    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def fallback(self, route: str, reason: str) -> None:
        self.seen[reason] += 1


def endpoints(
    b: Backends, failures: int = 2, cooldown_s: float = 5.0, model: str | None = "fb-model", attempts: int = 4
) -> tuple[Endpoints, Clock, Events]:
    clock, events = Clock(), Events()
    fb = Fallback(FALLBACK, model, b.client(2))
    return Endpoints(b.client(attempts), fb, Breakers(failures, cooldown_s, clock), events), clock, events


def payload_for(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "q"}]}


async def test_without_a_fallback_a_request_only_ever_meets_its_primary() -> None:
    b = Backends(status={"primary": 503, "fallback": 200})
    e = Endpoints(b.client(3))
    with pytest.raises(LLMFailed, match="gave up after 3 attempts") as info:
        await e.complete("direct", PRIMARY, "m", payload_for)
    assert info.value.transient and info.value.answered_by is None and info.value.attempts == 3
    assert b.hits == {"primary": 3} and list(e.breaker_states()) == []
    b.status["primary"] = 200
    c, by = await e.complete("direct", PRIMARY, "m", payload_for)
    assert (c.attempts, by) == (1, None)


async def test_retries_run_out_then_the_fallback_answers_with_its_model_and_the_attempts_add_up() -> None:
    b = Backends(status={"primary": 503, "fallback": 200})
    e, _, events = endpoints(b, failures=100)
    c, by = await e.complete("reasoning", PRIMARY, "m", payload_for)
    assert by == AnsweredBy(base_url=FALLBACK, model="fb-model", fallback=True)
    assert c.attempts == 5 and c.body["model"] == "fb-model"
    assert b.hits == {"primary": 4, "fallback": 1}
    assert [p["model"] for _, p in b.sent] == ["m"] * 4 + ["fb-model"]
    assert events.seen == {"retries_exhausted": 1}


async def test_the_breaker_opens_stops_retries_and_later_requests_skip_the_primary() -> None:
    b = Backends(status={"primary": 503, "fallback": 200})
    e, _, events = endpoints(b, failures=2, attempts=4)
    for _ in range(5):
        _, by = await e.complete("direct", PRIMARY, "m", payload_for)
        assert by is not None and by.fallback
    # the first request's second failure opened the breaker: it stopped retrying there; the other four skipped it
    assert b.hits == {"primary": 2, "fallback": 5}
    assert events.seen == {"retries_exhausted": 1, "breaker_open": 4}
    assert list(e.breaker_states()) == [(PRIMARY, "open", 1)]


async def test_after_the_cool_down_one_probe_closes_it_or_opens_it_again() -> None:
    b = Backends(status={"primary": 503, "fallback": 200})
    e, clock, _ = endpoints(b, failures=1, cooldown_s=5.0)
    await e.complete("direct", PRIMARY, "m", payload_for)
    clock.t = 5.0  # half-open: the probe fails, one attempt only, and the breaker opens again
    _, by = await e.complete("direct", PRIMARY, "m", payload_for)
    assert by is not None and by.fallback and b.hits["primary"] == 2
    assert list(e.breaker_states()) == [(PRIMARY, "open", 2)]
    b.status["primary"] = 200
    clock.t = 9.9
    await e.complete("direct", PRIMARY, "m", payload_for)
    assert b.hits["primary"] == 2  # still cooling down
    clock.t = 10.0
    for _ in range(3):
        _, by = await e.complete("direct", PRIMARY, "m", payload_for)
        assert by == AnsweredBy(base_url=PRIMARY, model="m", fallback=False)
    assert b.hits == {"primary": 5, "fallback": 3}
    assert list(e.breaker_states()) == [(PRIMARY, "closed", 2)]


async def test_a_permanent_error_is_the_answer_and_does_not_count() -> None:
    b = Backends(status={"primary": 400, "fallback": 200})
    e, _, events = endpoints(b, failures=1)
    for _ in range(3):
        with pytest.raises(LLMFailed) as info:
            await e.complete("direct", PRIMARY, "m", payload_for)
        assert not info.value.transient and info.value.status_code == 400
        assert info.value.answered_by == AnsweredBy(base_url=PRIMARY, model="m", fallback=False)
    assert b.hits == {"primary": 3} and not events.seen
    assert list(e.breaker_states()) == [(PRIMARY, "closed", 0)]


async def test_a_failing_fallback_is_recorded_as_the_fallback_with_every_attempt() -> None:
    b = Backends(status={"primary": 503, "fallback": 502})
    e, _, _ = endpoints(b, failures=100, model=None)
    with pytest.raises(LLMFailed) as info:
        await e.complete("direct", PRIMARY, "m", payload_for)
    assert info.value.attempts == 4 + 2 and info.value.status_code == 502
    assert info.value.answered_by == AnsweredBy(base_url=FALLBACK, model="m", fallback=True)


def test_records_and_metrics_never_keep_credentials_of_a_base_url() -> None:
    assert public_url("http://user:secret@llm:8000/v1") == "http://llm:8000/v1"
    assert public_url(PRIMARY) == PRIMARY


class Store:
    def __init__(self) -> None:
        self.results: list[RequestResult] = []

    async def admit(self, prompt: PromptMessage, shadow: bool = False) -> Verdict:
        return Verdict.OK

    async def write_result(self, result: RequestResult) -> bool:
        self.results.append(result)
        return True


def routed(i: int) -> ConsumerRecord[bytes, bytes]:
    prompt = PromptMessage(
        request_id=f"j/{i}",
        job_id="j",
        custom_id=str(i),
        line=i,
        body=ChatBody(messages=[ChatMessage(role="user", content="q")]),
        submitted_at=time.time(),
    )
    route = route_decision("reasoning", model="Qwen/Qwen3-30B-A3B", reasoning_effort="high")
    value = RoutedMessage(prompt=prompt, route=route, routed_at=time.time()).model_dump_json().encode()
    return ConsumerRecord("reasoning", 0, i, 0, 0, b"k", value, None, 1, len(value), [])


async def test_the_worker_switches_reasoning_the_fallback_family_s_way_and_records_who_answered() -> None:
    b = Backends(status={"primary": 503, "fallback": 200})
    inf = InferenceSettings(fallback_base_url=FALLBACK, fallback_model="openai/gpt-oss-20b", breaker_failures=2)
    s = Settings(llm_base_url=PRIMARY, topics=Topics(dead="dead"), inference=inf)
    metrics, store = WorkerMetrics("inference", "g"), Store()
    fb = Fallback(FALLBACK, inf.fallback_model, b.client(2))
    worker = InferenceWorker(s, None, None, b.client(4), store, metrics=metrics, fallback=fb)  # type: ignore[arg-type]
    for i in range(1, 4):
        await worker._answer(routed(i))
    first, fallback = b.sent[0][1], b.sent[-1][1]
    assert first["chat_template_kwargs"] == {"enable_thinking": True} and "reasoning_effort" not in first
    assert fallback["reasoning_effort"] == "high" and "chat_template_kwargs" not in fallback
    assert [r.status for r in store.results] == ["completed"] * 3
    assert [r.attempts for r in store.results] == [3, 1, 1]  # 2 on the primary (then it opened), 1 on the fallback
    assert {r.model for r in store.results} == {"openai/gpt-oss-20b"}
    assert all(r.answered_by == AnsweredBy(base_url=FALLBACK, model=r.model, fallback=True) for r in store.results)
    sample = metrics.registry.get_sample_value
    assert sample("thinkroute_llm_fallback_total", {"route": "reasoning", "reason": "retries_exhausted"}) == 1
    assert sample("thinkroute_llm_fallback_total", {"route": "reasoning", "reason": "breaker_open"}) == 2
    assert sample("thinkroute_llm_breaker_state", {"base_url": PRIMARY, "state": "open"}) == 1
    assert sample("thinkroute_llm_breaker_state", {"base_url": PRIMARY, "state": "closed"}) == 0
    assert sample("thinkroute_llm_breaker_opens_total", {"base_url": PRIMARY}) == 1


def test_the_output_line_says_who_answered_only_when_a_fallback_is_configured() -> None:
    msg = RoutedMessage.model_validate_json(routed(1).value or b"")
    done = Completion(200, ok("fb").json(), 3, 0.5)
    by = AnsweredBy(base_url=FALLBACK, model="fb", fallback=True)
    assert output_line(completed(msg, done, by)).route["answered_by"] == by.model_dump(mode="json")
    plain = completed(msg, done)
    assert "answered_by" not in output_line(plain).route
    old = json.loads(plain.model_dump_json())
    del old["answered_by"]  # a record written before the field existed still parses
    assert RequestResult.model_validate(old).answered_by is None


def test_the_fallback_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THINKROUTE_INFERENCE__FALLBACK_BASE_URL", FALLBACK)
    monkeypatch.setenv("THINKROUTE_INFERENCE__FALLBACK_MODEL", "openai/gpt-oss-20b")
    monkeypatch.setenv("THINKROUTE_INFERENCE__BREAKER_FAILURES", "3")
    monkeypatch.setenv("THINKROUTE_INFERENCE__BREAKER_COOLDOWN_S", "0.5")
    inf = Settings().inference
    assert (inf.fallback_base_url, inf.fallback_model, inf.breaker_failures, inf.breaker_cooldown_s) == (
        FALLBACK,
        "openai/gpt-oss-20b",
        3,
        0.5,
    )
    assert (inf.fallback_max_attempts, InferenceSettings().fallback_base_url) == (2, None)
