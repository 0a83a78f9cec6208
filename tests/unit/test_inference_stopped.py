"""Wiring: a routed message of a cancelled or expired job (``Verdict.STOPPED``) is skipped: counted stopped through
``Store.skip``, never sent to the LLM, never dead-lettered; its exploration shadow is dropped."""

from __future__ import annotations

import time
from typing import Any

from aiokafka.structs import ConsumerRecord

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import AttemptSummary, PromptMessage, PromptPlan, RoutedMessage
from schemas.records import RequestResult
from tests.factories import route_decision
from workers.inference.client import Completion
from workers.inference.worker import InferenceWorker
from workers.runtime.metrics import WorkerMetrics
from workers.settings import InferenceSettings, Settings, Topics
from workers.store.integrity import Verdict


def routed(i: int, **extra: Any) -> ConsumerRecord[bytes, bytes]:
    prompt = PromptMessage(
        request_id=f"j/{i}",
        job_id="j",
        custom_id=str(i),
        line=i,
        body=ChatBody(messages=[ChatMessage(role="user", content="q")]),
        submitted_at=time.time(),
        plan=PromptPlan(explore=True) if extra.get("shadow") else None,
    )
    msg = RoutedMessage(prompt=prompt, route=route_decision("direct"), routed_at=time.time(), **extra)
    value = msg.model_dump_json().encode()
    return ConsumerRecord("direct", 0, i, 0, 0, b"k", value, None, 1, len(value), [])


class CountingLLM:
    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, base_url: str, payload: Any) -> Completion:
        self.calls += 1
        body = {"model": "m", "choices": [{"message": {"content": "A"}, "finish_reason": "stop"}], "usage": {}}
        return Completion(200, body, 1, 0.0)


class StoppedStore:
    """Requests in ``stopped`` get the stopped verdict; ``skip`` counts each once."""

    def __init__(self, stopped: set[str]) -> None:
        self.stopped = stopped
        self.skipped: list[str] = []
        self.results: list[RequestResult] = []

    async def admit(self, prompt: PromptMessage, shadow: bool = False) -> Verdict:
        return Verdict.STOPPED if prompt.request_id in self.stopped else Verdict.OK

    async def skip(self, prompt: PromptMessage) -> bool:
        first = prompt.request_id not in self.skipped
        self.skipped.append(prompt.request_id)
        return first

    async def write_result(self, result: RequestResult) -> bool:
        self.results.append(result)
        return True


def stopped_total(metrics: WorkerMetrics, route: str) -> float:
    value = metrics.registry.get_sample_value("thinkroute_inference_stopped_total", {"route": route})
    return value or 0.0


async def test_a_stopped_job_s_messages_are_skipped_without_an_llm_call_or_a_dead_letter() -> None:
    llm, store = CountingLLM(), StoppedStore({"j/2", "j/3", "j/4"})
    metrics = WorkerMetrics("inference", "g")
    s = Settings(llm_base_url="http://x/v1", topics=Topics(dead="dead"), inference=InferenceSettings())
    # no producer: a dead letter (or an escalation) would fail the handler
    worker = InferenceWorker(s, None, None, llm, store, metrics=metrics)  # type: ignore[arg-type]
    first = AttemptSummary(route=route_decision("direct"), model="m", confidence=0.1, threshold=0.5)
    records = [
        routed(1),
        routed(2),
        routed(2),  # a redelivery: skipped again, counted once by the store
        routed(3, previous_attempt=first),  # an escalated second attempt of a stopped job
        routed(4, shadow=True),  # its exploration shadow: dropped
    ]
    for r in records:
        await worker._answer(r)
    assert llm.calls == 1 and [r.request_id for r in store.results] == ["j/1"]
    assert store.skipped == ["j/2", "j/2", "j/3"]
    assert (worker.stats.stopped, worker.stats.completed, worker.stats.dead, worker.stats.explored) == (3, 1, 0, 0)
    assert stopped_total(metrics, "direct") == 3
