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
from workers.inference.client import Completion
from workers.inference.worker import InferenceWorker
from workers.settings import InferenceSettings, Settings, Topics

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


class FakeConsumer:
    def __init__(self, n: int) -> None:
        self.backlog = [record(i) for i in range(n)]
        self.asked: list[int] = []
        self.paused = False
        self.pauses = 0
        self.commits: list[int] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self, *tps: TopicPartition) -> None:
        self.paused = False

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        assert not self.paused, "fetched while paused"
        self.asked.append(max_records or 0)
        take, self.backlog = self.backlog[: max_records or 1], self.backlog[max_records or 1 :]
        if not take:
            await asyncio.sleep(0.01)
        return {TP: take} if take else {}

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets[TP].offset)


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

    async def write_result(self, result: RequestResult) -> bool:
        if result.request_id in self.results:
            return False
        self.results[result.request_id] = result
        return True


def settings(**inference: Any) -> Settings:
    return Settings(llm_base_url="x", topics=Topics(dead="dead"), inference=InferenceSettings(**inference))


async def test_bounded_in_flight_pause_and_in_order_commits() -> None:
    consumer, llm, store = FakeConsumer(40), GatedLLM(), MemoryStore()
    worker = InferenceWorker(settings(concurrency=4), consumer, None, llm, store)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def until(cond: Any) -> None:
        async with asyncio.timeout(10):
            while not cond():  # noqa: ASYNC110 - polling a fake, no event to wait on
                await asyncio.sleep(0.005)

    await until(lambda: llm.in_flight == 4)
    await until(lambda: consumer.paused)
    assert len(consumer.backlog) == 36  # nothing fetched beyond the 4 slots
    assert consumer.commits == []
    for _ in range(40):
        llm.gate.release()
    await until(lambda: len(store.results) == 40)
    stop.set()
    await task
    assert llm.max_in_flight == 4
    assert max(consumer.asked) <= 4 and consumer.pauses >= 1
    assert consumer.commits[-1] == 40
    assert consumer.commits == sorted(consumer.commits)


async def test_commits_are_spaced_by_the_interval_and_always_made_at_drain() -> None:
    async def run(interval: float) -> list[int]:
        consumer, llm, store = FakeConsumer(40), GatedLLM(), MemoryStore()
        s = settings(concurrency=4, commit_interval_ms=int(interval * 1000))
        worker = InferenceWorker(s, consumer, None, llm, store)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        for _ in range(40):
            llm.gate.release()
        async with asyncio.timeout(10):
            while len(store.results) < 40:  # noqa: ASYNC110 - polling a fake, no event to wait on
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        stop.set()
        await task
        return consumer.commits

    spaced = await run(60.0)
    assert spaced[-1] == 40 and len(spaced) <= 2  # the first round (nothing to commit yet) and the drain
    eager = await run(0.0)
    assert eager[-1] == 40 and len(eager) > len(spaced) and eager == sorted(eager)
