"""All-or-nothing submits, without servers: every line encoded and checked before anything is recorded,
and what a failure while publishing leaves (a failed job that names itself; status never pending forever)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.batch import ChatBody
from schemas.messages import PromptMessage
from schemas.records import ExplorationRecord, JobMeta, JobTotals, RequestResult, RouteTotals
from workers.cli import console
from workers.errors import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, BadInput, InvalidInput
from workers.store.integrity import mac_matches
from workers.store.jobstore import ROUTES
from workers.submit import jobs
from workers.submit.batchfile import InputRequest
from workers.submit.encode import MAX_REQUEST_SIZE, ROUTING_HEADROOM, encode_prompts, message_limit
from workers.submit.jobs import LEASE_EXPIRED, SubmitFailed, SubmitUnreachable, submit, summary

SECRET = bytes(range(32))


def body(content: str, **extra: Any) -> ChatBody:
    return ChatBody.model_validate({"messages": [{"role": "user", "content": content}], **extra})


def requests(*bodies: ChatBody) -> list[InputRequest]:
    return [InputRequest(line=i + 1, custom_id=f"c{i + 1}", body=b) for i, b in enumerate(bodies)]


def test_every_line_is_signed_and_encoded_with_its_request_id_as_key() -> None:
    reqs = requests(body("a"), body("b"))
    encoded = encode_prompts("job-x", reqs, 10.0, SECRET, MAX_REQUEST_SIZE)
    assert [k for k, _ in encoded] == [b"job-x/c1", b"job-x/c2"]
    for (_, value), req in zip(encoded, reqs, strict=True):
        msg = PromptMessage.model_validate_json(value)
        assert (msg.custom_id, msg.line, msg.body, msg.submitted_at) == (req.custom_id, req.line, req.body, 10.0)
        assert mac_matches(msg, SECRET)


def test_a_lone_surrogate_is_a_bad_line_with_its_number() -> None:
    reqs = requests(body("fine"), body("broken \ud800 text"), body("fine"))
    with pytest.raises(BadInput) as info:
        encode_prompts("job-x", reqs, 1.0, SECRET, MAX_REQUEST_SIZE)
    assert info.value.line == 2 and info.value.exit_code == EXIT_USAGE
    assert str(info.value).startswith("line 2: ") and "surrogate" in str(info.value)
    bad_id = [InputRequest(line=7, custom_id="id-\udcff", body=body("fine"))]
    with pytest.raises(BadInput, match=r"^line 7: "):
        encode_prompts("job-x", bad_id, 1.0, SECRET, MAX_REQUEST_SIZE)


def test_the_size_limit_is_the_producers_estimate_less_the_routing_headroom() -> None:
    reqs = requests(body("x" * 5000))
    ((key, value),) = encode_prompts("job-x", reqs, 1.0, SECRET, MAX_REQUEST_SIZE)
    size = len(key) + len(value)
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    exact = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, [])
    assert size < exact < size + 100  # the record's framing, as aiokafka counts it before sending
    assert encode_prompts("job-x", reqs, 1.0, SECRET, exact + ROUTING_HEADROOM)
    with pytest.raises(BadInput) as info:
        big = [InputRequest(line=n, custom_id=f"c{n}", body=reqs[0].body) for n in (2, 3)]
        encode_prompts("job-x", [*requests(body("ok")), *big], 1.0, SECRET, exact + ROUTING_HEADROOM - 1)
    assert info.value.line == 2
    assert f"is {exact} bytes, over the limit of {exact - 1} bytes" in str(info.value)
    assert "(and 1 more line(s) that cannot be published); nothing submitted" in str(info.value)


async def test_the_limit_is_read_from_the_producer() -> None:
    assert message_limit(AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_request_size=12345)) == 12345
    assert message_limit(AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")) == MAX_REQUEST_SIZE == 1024 * 1024
    assert message_limit(object()) == MAX_REQUEST_SIZE


# submit with fakes --------------------------------------------------------------------------------------


class FakeStore:
    def __init__(self, exists: bool = False, renew: bool = True, start: str = "running") -> None:
        self.calls: list[tuple[str, Any]] = []
        self.exists, self.renew, self.start = exists, renew, start
        self.meta: JobMeta | None = None
        self.lease_expired = False

    async def register_job(self, meta: JobMeta, request_ids: Sequence[str], secret: bytes) -> None:
        if self.exists:
            raise InvalidInput(f"job {meta.job_id} already exists")
        self.calls.append(("register", list(request_ids)))
        self.meta = meta

    async def renew_lease(self, job_id: str) -> bool:
        self.calls.append(("renew", job_id))
        if not self.renew and self.meta is not None:
            self.meta = self.meta.model_copy(update={"state": "failed", "failed_reason": "lease ran out"})
        return self.renew

    async def start_job(self, job_id: str) -> str:
        self.calls.append(("start", job_id))
        return self.start

    async def fail_job(self, job_id: str, reason: str, only_if_lease_expired: bool = False) -> bool:
        self.calls.append(("fail", reason))
        if self.meta is None or (only_if_lease_expired and not self.lease_expired):
            return False
        self.meta = self.meta.model_copy(update={"state": "failed", "failed_reason": reason})
        return True

    async def job_meta(self, job_id: str) -> JobMeta | None:
        return self.meta

    async def totals(self, job_id: str) -> JobTotals:
        return JobTotals(routes={r: RouteTotals() for r in ROUTES})

    async def latency_percentiles(self, job_id: str) -> dict[str, float]:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}

    async def explored_pairs(self, job_id: str) -> tuple[list[RequestResult], list[ExplorationRecord]]:
        return [], []  # none answered yet

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class FakeProducer:
    """Acks every send, or: raises ``error`` on the send after ``fail_after``, fails the ack of send
    ``bad_ack`` (0-based) with it, or blocks forever on the send after ``block_after`` (``blocked`` is set)."""

    def __init__(
        self,
        fail_after: int | None = None,
        bad_ack: int | None = None,
        block_after: int | None = None,
        error: type[Exception] = KafkaTimeoutError,
    ) -> None:
        self.sent: list[bytes] = []
        self.fail_after, self.bad_ack, self.block_after, self.error = fail_after, bad_ack, block_after, error
        self.blocked = asyncio.Event()

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise self.error("send failed (test)")
        if self.block_after is not None and len(self.sent) >= self.block_after:
            self.blocked.set()
            await asyncio.Event().wait()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(self.sent) == self.bad_ack:
            fut.set_exception(self.error("no ack (test)"))
        else:
            fut.set_result(None)
        self.sent.append(value)
        return fut


SIX = requests(*(body(f"question {i}") for i in range(6)))


async def test_a_line_over_the_limit_records_and_publishes_nothing() -> None:
    store, producer = FakeStore(), FakeProducer()
    reqs = [*SIX[:2], InputRequest(line=3, custom_id="c3", body=body("y" * 50_000)), *SIX[3:]]
    with pytest.raises(BadInput, match=r"^line 3: "):
        await submit(producer, store, "p", reqs, "f", max_message_bytes=40_000)  # type: ignore[arg-type]
    assert store.calls == [] and producer.sent == []


async def test_the_job_is_registered_with_every_request_id_before_the_first_publish() -> None:
    store, producer = FakeStore(), FakeProducer()
    meta = await submit(producer, store, "p", SIX, "f", job_id="job-x")  # type: ignore[arg-type]
    assert store.calls[0] == ("register", [f"job-x/c{i}" for i in range(1, 7)])
    assert store.names()[-1] == "start" and "fail" not in store.names()
    assert len(producer.sent) == 6 and meta.state == "running" and meta.total == 6


@pytest.mark.parametrize(
    ("producer", "error", "exit_code"),
    [
        (FakeProducer(fail_after=2), "KafkaTimeoutError", EXIT_UNREACHABLE),
        (FakeProducer(bad_ack=1), "KafkaTimeoutError", EXIT_UNREACHABLE),
        (FakeProducer(bad_ack=4, error=MessageSizeTooLargeError), "MessageSizeTooLargeError", EXIT_FAILED),
    ],
    ids=["send", "ack", "broker-limit"],
)
async def test_a_broker_failure_mid_publish_fails_the_job_and_names_it(
    producer: FakeProducer, error: str, exit_code: int
) -> None:
    store = FakeStore()
    with pytest.raises(SubmitFailed) as info:
        await submit(producer, store, "p", SIX, "f", job_id="job-half")  # type: ignore[arg-type]
    assert info.value.job_id == "job-half" and str(info.value).startswith("job job-half failed: publishing failed")
    assert error in str(info.value) and info.value.exit_code == exit_code
    assert "start" not in store.names()
    assert [r for n, r in store.calls if n == "fail"] == [info.value.reason]
    assert store.meta is not None and store.meta.state == "failed"


async def test_redis_lost_after_the_last_ack_fails_the_job_too() -> None:
    class LostRedis(FakeStore):
        async def start_job(self, job_id: str) -> str:
            raise RedisConnectionError("gone (test)")

    store = LostRedis()
    with pytest.raises(SubmitUnreachable) as info:
        await submit(FakeProducer(), store, "p", SIX, "f", job_id="job-r")  # type: ignore[arg-type]
    assert info.value.reason.startswith("recording that every prompt was published failed: ConnectionError")
    assert info.value.exit_code == EXIT_UNREACHABLE and store.names()[-1] == "fail"


async def test_an_interrupted_submit_fails_the_job_before_it_stops() -> None:
    store, producer = FakeStore(), FakeProducer(block_after=3)
    task = asyncio.create_task(submit(producer, store, "p", SIX, "f", job_id="job-int"))  # type: ignore[arg-type]
    async with asyncio.timeout(10):
        await producer.blocked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.names() == ["register", "fail"] and len(producer.sent) == 3
    assert store.meta is not None and store.meta.state == "failed" and "CancelledError" in str(store.meta.failed_reason)


async def test_a_job_failed_while_publishing_is_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "LEASE_S", 0.0)  # renew after every send
    store = FakeStore(renew=False)
    with pytest.raises(SubmitFailed, match=r"^job job-l failed: lease ran out$"):
        await submit(FakeProducer(), store, "p", SIX, "f", job_id="job-l")  # type: ignore[arg-type]
    assert "start" not in store.names()
    with pytest.raises(SubmitFailed, match=r"^job job-s failed: "):
        await submit(FakeProducer(), FakeStore(start="failed"), "p", SIX, "f", job_id="job-s")  # type: ignore[arg-type]


async def test_an_existing_job_id_is_refused_and_left_alone() -> None:
    store, producer = FakeStore(exists=True), FakeProducer()
    with pytest.raises(InvalidInput, match="already exists"):
        await submit(producer, store, "p", SIX, "f", job_id="job-x")  # type: ignore[arg-type]
    assert store.calls == [] and producer.sent == []


async def test_status_of_a_failed_job_shows_the_state_and_reason_and_nothing_pending(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = FakeStore()
    store.meta = JobMeta(job_id="job-f", total=20, source="f", submitted_at=1.0, state="failed", failed_reason="boom")
    s = await summary(store, JobMeta(job_id="job-f", total=20, source="f", submitted_at=1.0))  # type: ignore[arg-type]
    assert (s["state"], s["failed_reason"], s["pending"], s["completed"]) == ("failed", "boom", 0, 0)
    console.print_summary(s, as_json=False)
    printed = capsys.readouterr().out
    assert "0 pending of 20" in printed and "(failed)" in printed and "failed: boom" in printed


async def test_a_submitting_job_whose_lease_expired_is_failed_by_status() -> None:
    store = FakeStore()
    store.meta = JobMeta(job_id="job-v", total=5, source="f", submitted_at=1.0)
    s = await summary(store, store.meta)  # type: ignore[arg-type]
    assert (s["state"], s["pending"]) == ("submitting", 5)  # lease still held: nothing done
    store.lease_expired = True
    s = await summary(store, store.meta)  # type: ignore[arg-type]
    assert (s["state"], s["failed_reason"], s["pending"]) == ("failed", LEASE_EXPIRED, 0)
