"""Intake from a valid file to the prompts topic: ids registered in input order and in chunks, every prompt
signed with the secret ``begin_submit`` got, the planner's plans on their prompts, a cancel midway stops the
publishing within a chunk, a broker failure fails the batch."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence

import pytest

from schemas.chat import ChatBody
from schemas.messages import PromptMessage, PromptPlan
from schemas.records import JobPlan
from tests.factories import batch_meta, input_record, request_line
from tests.fakes import FakeBatchStore, FakeProducer, MemoryStorage
from workers.settings import Settings
from workers.store.integrity import mac_matches
from workers.submit.intake import CHUNK, REGISTER_CHUNK, intake

JOB = "batch_p"


# every test: tempfile writes in a directory of its own, checked empty after (intake must not leave its copy)
pytestmark = pytest.mark.usefixtures("private_tmp")


def file_of(n: int) -> bytes:
    return b"".join(request_line(f"req-{i}", content=f"Question {i}?") + b"\n" for i in range(n))


async def run(
    data: bytes, producer: FakeProducer | None = None, planner: object = None, **store_kw: object
) -> tuple[str, FakeBatchStore, FakeProducer]:
    store = FakeBatchStore(batch_meta(JOB), **store_kw)  # type: ignore[arg-type]
    producer = producer or FakeProducer()
    s = Settings()
    storage = MemoryStorage({"file-in": data})
    state = await intake(producer, store, storage, s, JOB, input_record(len(data)), planner)  # type: ignore[arg-type]
    return state, store, producer


async def test_every_prompt_is_published_signed_in_input_order_and_the_ids_registered_in_chunks() -> None:
    n = 2 * REGISTER_CHUNK + 345
    state, store, producer = await run(file_of(n))
    assert state == "running" and store.meta.state == "running"
    want = [f"{JOB}/req-{i}" for i in range(n)]
    assert store.ids == want
    assert store.id_calls == [REGISTER_CHUNK, REGISTER_CHUNK, 345]
    assert store.record.total == n and store.record.plan is None and store.record.owner == "alice"
    assert [key.decode() for _, key, _ in producer.sent] == want
    assert {topic for topic, _, _ in producer.sent} == {Settings().topics.prompts}
    assert store.secret is not None
    for i, (_, _, value) in enumerate(producer.sent):
        msg = PromptMessage.model_validate_json(value)
        assert (msg.job_id, msg.custom_id, msg.line, msg.plan) == (JOB, f"req-{i}", i + 1, None)
        assert msg.submitted_at == store.meta.submitted_at
        assert msg.body.messages[0].content == f"Question {i}?"
        assert mac_matches(msg, store.secret)
        assert not mac_matches(msg, bytes(32))
    assert store.renewed >= n // CHUNK  # at least once a chunk


async def test_a_gzip_compressed_input_file_is_read_as_the_plain_one() -> None:
    state, _, producer = await run(gzip.compress(file_of(30)))
    assert state == "running"
    assert [key.decode() for _, key, _ in producer.sent] == [f"{JOB}/req-{i}" for i in range(30)]


async def test_the_planners_plans_are_signed_onto_their_prompts() -> None:
    n = CHUNK + 7
    seen: dict[str, list[str]] = {}

    def planner(
        custom_ids: Sequence[str], bodies: Iterable[ChatBody]
    ) -> tuple[JobPlan | None, list[PromptPlan | None]]:
        seen["ids"] = list(custom_ids)
        seen["texts"] = [b.messages[0].text() for b in bodies]
        plans: list[PromptPlan | None] = [
            PromptPlan(route="reasoning" if i % 3 == 0 else "direct", priority=i / n) if i % 5 else None
            for i in range(len(custom_ids))
        ]
        return JobPlan(
            budget="share=0.3", planned_reasoning=sum(1 for p in plans if p and p.route == "reasoning")
        ), plans

    state, store, producer = await run(file_of(n), planner=planner)
    assert state == "running"
    assert seen["ids"] == [f"req-{i}" for i in range(n)]
    assert seen["texts"] == [f"Question {i}?" for i in range(n)]
    assert store.record.plan is not None and store.record.plan.budget == "share=0.3"
    assert store.secret is not None
    for i, (_, _, value) in enumerate(producer.sent):
        msg = PromptMessage.model_validate_json(value)
        if i % 5:
            assert msg.plan is not None and msg.plan.route == ("reasoning" if i % 3 == 0 else "direct")
            assert msg.plan.priority == i / n
        else:
            assert msg.plan is None
        assert mac_matches(msg, store.secret)
        if msg.plan is not None:  # the plan is covered by the MAC: moved to the other arm, it no longer matches
            other = "direct" if msg.plan.route == "reasoning" else "reasoning"
            moved = msg.model_copy(update={"plan": msg.plan.model_copy(update={"route": other})})
            assert not mac_matches(moved, store.secret)
    assert len(producer.sent) == n


async def test_a_cancel_while_publishing_stops_it_within_a_chunk() -> None:
    n = 6 * CHUNK
    producer = FakeProducer()
    store = FakeBatchStore(batch_meta(JOB))
    stop_after = 2 * CHUNK + 100
    real_renew = store.renew_lease

    async def renew(job_id: str, lease_s: float = 60.0) -> bool:
        if producer.count >= stop_after and store.meta.state == "submitting":
            store._state("cancelled", stop="cancelled")  # what a cancel does to a submitting batch with no answer
        return await real_renew(job_id, lease_s)

    store.renew_lease = renew  # type: ignore[method-assign]
    data = file_of(n)
    state = await intake(producer, store, MemoryStorage({"file-in": data}), Settings(), JOB, input_record(len(data)))  # type: ignore[arg-type]
    assert state == "cancelled" and store.meta.state == "cancelled"  # not started, not failed
    assert stop_after <= len(producer.sent) < stop_after + CHUNK
    assert store.ids == [f"{JOB}/req-{i}" for i in range(n)]  # every id was registered before the publishing


async def test_a_broker_failure_fails_the_batch() -> None:
    state, store, producer = await run(file_of(3 * CHUNK), FakeProducer(fail_at=CHUNK + 10))
    assert state == "failed" and store.meta.state == "failed"
    assert store.reason is not None and "publishing" in store.reason and "KafkaConnectionError" in store.reason
    assert len(producer.sent) == CHUNK + 9


async def test_a_cancel_before_begin_submit_publishes_nothing() -> None:
    store = FakeBatchStore(batch_meta(JOB))
    real_begin = store.begin_submit

    async def begin(job_id: str, record: object, secret: bytes, lease_s: float) -> bool:
        store._state("cancelled", stop="cancelled")
        return await real_begin(job_id, record, secret, lease_s)

    store.begin_submit = begin  # type: ignore[method-assign]
    producer = FakeProducer()
    data = file_of(10)
    state = await intake(producer, store, MemoryStorage({"file-in": data}), Settings(), JOB, input_record(len(data)))  # type: ignore[arg-type]
    assert state == "cancelled" and producer.count == 0
