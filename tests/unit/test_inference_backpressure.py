"""Wiring: the inference loop never holds more than `concurrency` messages, pauses its partitions when
full, and commits each partition only up to the oldest unfinished message."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.batch import ChatBody, ChatMessage
from schemas.messages import PromptMessage, RoutedMessage
from schemas.records import RequestResult
from tests.factories import route_decision
from tests.fakes import FakeConsumer
from tests.helpers import until
from workers.inference.client import Completion
from workers.inference.worker import InferenceWorker
from workers.settings import InferenceSettings, Settings, Topics
from workers.store.integrity import Verdict

TP = TopicPartition("direct", 0)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    prompt = PromptMessage(
        request_id=f"j/{offset}",
        job_id="j",
        custom_id=str(offset),
        line=offset + 1,
        body=ChatBody(messages=[ChatMessage(role="user", content="q")]),
        submitted_at=time.time(),
    )
    route = route_decision("direct", reason="default")
    value = RoutedMessage(prompt=prompt, route=route, routed_at=time.time()).model_dump_json().encode()
    return ConsumerRecord("direct", 0, offset, 0, 0, b"k", value, None, 1, len(value), [])


class GatedLLM:
    """Each call waits until the test releases it; records how many run at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = asyncio.Semaphore(0)
        self.retries = 0

    async def complete(self, base_url: str, payload: Any) -> Completion:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await self.gate.acquire()
        self.in_flight -= 1
        body = {
            "model": "m",
            "choices": [{"message": {"content": "A"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
        return Completion(200, body, 1, 0.0)


class MemoryStore:
    def __init__(self) -> None:
        self.results: dict[str, RequestResult] = {}

    async def is_done(self, job_id: str, request_id: str) -> bool:
        return request_id in self.results

    async def admit(self, prompt: PromptMessage) -> Verdict:
        return Verdict.DONE if prompt.request_id in self.results else Verdict.OK

    async def write_result(self, result: RequestResult) -> bool:
        if result.request_id in self.results:
            return False
        self.results[result.request_id] = result
        return True


def settings(**inference: Any) -> Settings:
    return Settings(llm_base_url="x", topics=Topics(dead="dead"), inference=InferenceSettings(**inference))


def backlog(n: int) -> FakeConsumer:
    return FakeConsumer(assignment=[TP], records=[record(i) for i in range(n)])


async def test_bounded_in_flight_pause_and_in_order_commits() -> None:
    consumer, llm, store = backlog(40), GatedLLM(), MemoryStore()
    worker = InferenceWorker(settings(concurrency=4), consumer, None, llm, store)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    await until(lambda: llm.in_flight == 4)
    await until(lambda: bool(consumer.paused))
    assert len(consumer.buffer) == 36  # nothing fetched beyond the 4 slots
    assert consumer.commits == []
    for _ in range(40):
        llm.gate.release()
    await until(lambda: len(store.results) == 40)
    stop.set()
    await task
    assert llm.max_in_flight == 4
    assert max(consumer.asked) <= 4 and consumer.pauses >= 1
    commits = [c[TP] for c in consumer.commits]
    assert commits[-1] == 40
    assert commits == sorted(commits)


async def test_commits_are_spaced_by_the_interval_and_always_made_at_drain() -> None:
    async def run(interval: float) -> list[int]:
        consumer, llm, store = backlog(40), GatedLLM(), MemoryStore()
        s = settings(concurrency=4, commit_interval_ms=int(interval * 1000))
        worker = InferenceWorker(s, consumer, None, llm, store)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        for _ in range(40):
            llm.gate.release()
        await until(lambda: len(store.results) == 40)
        await asyncio.sleep(0.05)
        stop.set()
        await task
        return [c[TP] for c in consumer.commits]

    spaced = await run(60.0)
    assert spaced[-1] == 40 and len(spaced) <= 2  # the first round (nothing to commit yet) and the drain
    eager = await run(0.0)
    assert eager[-1] == 40 and len(eager) > len(spaced) and eager == sorted(eager)


async def test_revoke_waits_for_the_requests_in_flight_then_commits_them() -> None:
    consumer, llm, store = backlog(4), GatedLLM(), MemoryStore()
    worker = InferenceWorker(settings(concurrency=4), consumer, None, llm, store)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await until(lambda: llm.in_flight == 4 and bool(consumer.paused))
    revoke = asyncio.create_task(worker.rebalance_listener().on_partitions_revoked({TP}))
    llm.gate.release()
    await until(lambda: len(store.results) == 1)
    assert not revoke.done()  # three requests still in flight
    for _ in range(3):
        llm.gate.release()
    await asyncio.wait_for(revoke, 10)
    assert [c[TP] for c in consumer.commits][-1] == 4 and len(store.results) == 4
    stop.set()
    await task


class FailingStore(MemoryStore):
    async def write_result(self, result: RequestResult) -> bool:
        if result.request_id == "j/2":
            raise RuntimeError("store broke")
        return await super().write_result(result)


async def test_a_failing_handler_cancels_the_others_and_run_raises_its_error() -> None:
    consumer, llm, store = backlog(6), GatedLLM(), FailingStore()
    worker = InferenceWorker(settings(concurrency=6), consumer, None, llm, store)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run(asyncio.Event()))
    await until(lambda: llm.in_flight == 6)
    for _ in range(3):  # j/0, j/1, j/2 answer (the LLM gate is FIFO); j/2's store write fails
        llm.gate.release()
    try:
        await asyncio.wait_for(task, 10)
    except RuntimeError as exc:
        assert str(exc) == "store broke"
    else:
        raise AssertionError("run did not raise the handler's error")
    assert llm.in_flight == 3 and sorted(store.results) == ["j/0", "j/1"]  # the others were cancelled
    assert all(c[TP] <= 2 for c in consumer.commits)  # nothing from the failed message on is committed
