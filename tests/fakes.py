"""The one fake Kafka consumer of the unit tests (router pipeline, inference backpressure, metrics); the fakes of
the Batch API's intake and finalize (a file storage in memory, a producer, the store's calls of one batch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from workers.runtime.tasks import wait_event

Record = ConsumerRecord[bytes, bytes]


class FakeConsumer:
    """The part of ``AIOKafkaConsumer`` the workers and their metrics use.

    Hands out what the test feeds it, in order, at most ``max_records`` at a time (a fetch with nothing to
    hand out waits up to its timeout for a feed, as a broker holds a fetch, and returns without yielding to
    the event loop when its timeout is 0, as aiokafka's does); records each fetch's
    ``max_records`` (``asked``), pauses, and commits (``commits``: one ``{partition: offset}`` per commit);
    ``highwater`` answers from the given high watermarks. The assignment (``assignment`` and the partitions
    with a high watermark) is fixed.
    """

    def __init__(
        self,
        highwater: Mapping[TopicPartition, int | None] | None = None,
        *,
        assignment: Iterable[TopicPartition] = (),
        records: Iterable[Record] = (),
    ) -> None:
        self.hw = dict(highwater or {})
        self.assigned = set(assignment) | set(self.hw)
        self.buffer: list[Record] = list(records)
        self.asked: list[int] = []
        self.paused: set[TopicPartition] = set()
        self.pauses = 0
        self.commits: list[dict[TopicPartition, int]] = []
        self._fed = asyncio.Event()

    def feed(self, records: Iterable[Record]) -> None:
        self.buffer.extend(records)
        self._fed.set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.hw[tp]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)
        self.pauses += 1

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        assert not self.paused, "fetched while paused"
        self.asked.append(max_records or 0)
        if not self.buffer and timeout_ms > 0:  # as aiokafka's: with no timeout it returns at once, not yielding
            self._fed.clear()
            await wait_event(self._fed, timeout_ms / 1000)
        n = max_records or 1
        take, self.buffer = self.buffer[:n], self.buffer[n:]
        out: dict[TopicPartition, list[Record]] = {}
        for r in take:
            out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        return out

    async def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        self.commits.append({tp: o.offset for tp, o in offsets.items()})

    def by_partition(self) -> list[dict[int, int]]:
        """The commits as ``{partition: offset}`` (one topic)."""
        return [{tp.partition: o for tp, o in c.items()} for c in self.commits]


# --- issue 15: the fakes of the intake and finalize unit tests ------------------------------------------------


class MemoryStorage:
    """``workers.files.storage.FileStorage`` in memory: objects by key; ``chunks`` records each put's chunk sizes."""

    def __init__(self, objects: Mapping[str, bytes] | None = None) -> None:
        self.objects: dict[str, bytes] = dict(objects or {})
        self.chunks: dict[str, list[int]] = {}
        self.deleted: list[str] = []

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        assert key not in self.objects, f"{key} exists"
        parts: list[bytes] = []
        async for chunk in chunks:
            parts.append(chunk)
        self.objects[key] = b"".join(parts)
        self.chunks[key] = [len(p) for p in parts]
        return len(self.objects[key])

    async def get(self, key: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise FileNotFoundError(key)
        data = self.objects[key]
        for i in range(0, len(data), chunk_size):
            yield data[i : i + chunk_size]

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)
        self.deleted.append(key)

    async def close(self) -> None:
        pass


class FakeProducer:
    """The part of ``AIOKafkaProducer`` a submitter uses: ``send`` answers an already resolved future (or a failed
    one from the ``fail_at``-th send on); ``sent`` holds (topic, key, value) unless ``keep`` is False."""

    def __init__(self, keep: bool = True, fail_at: int | None = None, max_request_size: int = 1024 * 1024) -> None:
        self.keep = keep
        self.fail_at = fail_at
        self._max_request_size = max_request_size
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.count = 0

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        from aiokafka.errors import KafkaConnectionError

        self.count += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_at is not None and self.count >= self.fail_at:
            fut.set_exception(KafkaConnectionError("broker gone"))
        else:
            fut.set_result(None)
            if self.keep:
                self.sent.append((topic, key, value))
        return fut


class FakeBatchStore:
    """The ``Store`` calls of intake and finalize, in memory, for one batch (``meta``).

    ``renewals``: how many renewals succeed before ``renew_lease`` answers False with the state ``stopped_as``
    (a cancel). ``keep_ids``: False keeps only the count of registered ids (the memory test)."""

    def __init__(
        self,
        meta: Any,
        renewals: int | None = None,
        stopped_as: str = "cancelled",
        keep_ids: bool = True,
        results: Mapping[str, Any] | None = None,
    ) -> None:
        self.meta = meta
        self.renewals = renewals
        self.stopped_as = stopped_as
        self.keep_ids = keep_ids
        self.renewed = 0
        self.ids: list[str] = []
        self.id_count = 0
        self.id_calls: list[int] = []
        self.secret: bytes | None = None
        self.record: Any = None
        self.errors: list[Any] | None = None
        self.reason: str | None = None
        self.results: dict[str, Any] = dict(results or {})
        self.finalized: tuple[str | None, str | None] | None = None

    def _state(self, state: str, **fields: Any) -> None:
        self.meta = self.meta.model_copy(update={"state": state, **fields})

    async def job_meta(self, job_id: str) -> Any:
        return self.meta if job_id == self.meta.job_id else None

    async def renew_lease(self, job_id: str, lease_s: float = 60.0) -> bool:
        if self.meta.state not in ("validating", "submitting"):
            return False
        if self.renewals is not None and self.renewed >= self.renewals:
            self._state(self.stopped_as, stop="cancelled")
            return False
        self.renewed += 1
        return True

    async def register_ids(self, job_id: str, request_ids: Sequence[str]) -> None:
        assert self.meta.state == "validating"
        self.id_calls.append(len(request_ids))
        self.id_count += len(request_ids)
        if self.keep_ids:
            self.ids.extend(request_ids)

    async def begin_submit(self, job_id: str, record: Any, secret: bytes, lease_s: float) -> bool:
        if self.meta.state != "validating":
            return False
        self.record, self.secret = record, secret
        self._state("submitting", total=record.total, plan=record.plan)
        return True

    async def fail_validation(self, job_id: str, reason: str, errors: Sequence[Any]) -> bool:
        if self.meta.state != "validating":
            return False
        self.reason, self.errors = reason, list(errors)
        self._state("failed", failed_reason=reason, errors=list(errors))
        return True

    async def fail_job(self, job_id: str, reason: str, only_if_lease_expired: bool = False) -> bool:
        if self.meta.state != "submitting":
            return False
        self.reason = reason
        self._state("failed", failed_reason=reason)
        return True

    async def start_job(self, job_id: str) -> str | None:
        if self.meta.state != "submitting":
            return None
        self._state("running")
        return "running"

    async def request_ids_in_order(self, job_id: str, start: int, count: int) -> list[str]:
        return self.ids[start : start + count]

    async def results_of(self, job_id: str, request_ids: Sequence[str], chunk: int = 500) -> list[Any]:
        return [self.results[r] for r in request_ids if r in self.results]

    async def mark_finalized(self, job_id: str, output_file_id: str | None, error_file_id: str | None) -> bool:
        self.finalized = (output_file_id, error_file_id)
        return True


class FakeFileIndex:
    def __init__(self) -> None:
        self.records: dict[str, Any] = {}

    async def add(self, record: Any) -> None:
        self.records[record.id] = record
