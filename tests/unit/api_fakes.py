"""In-memory stand-ins for what ``thinkroute serve``'s routes use (the store's lifecycle and counters, the file
index and storage, the intakes, the planners), and an app built on them for Starlette's TestClient."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

from schemas.records import FileRecord, JobMeta, JobState, JobTotals, LineError, StopReason
from workers.api.app import build_app
from workers.api.auth import Keys
from workers.api.context import ApiContext
from workers.api.intakes import ShuttingDown
from workers.errors import InvalidInput
from workers.router.plan import PlanArgs
from workers.runtime.apikeys import key_hash
from workers.settings import ApiSettings, Settings

KEYS = {"alice": "tr-alice-key", "bob": "tr-bob-key"}


def auth(owner: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[owner]}"}


class FakeRedis:
    def __init__(self) -> None:
        self.up = True

    async def ping(self) -> bool:
        if not self.up:
            raise ConnectionError("down")
        return True


class FakeStore:
    """Jobs as ``JobMeta`` records; the lifecycle calls change their state the way the scripts do."""

    def __init__(self) -> None:
        self.redis = FakeRedis()
        self.metas: dict[str, JobMeta] = {}
        self.counts: dict[str, JobTotals] = {}
        self.owners: dict[str, list[str]] = {}  # oldest first
        self.active: list[str] = []
        self.calls: list[tuple[Any, ...]] = []
        self.claims: dict[str, bool] = {}
        self.lease_expired: set[str] = set()
        self.renewable = True

    def put(self, meta: JobMeta, totals: JobTotals | None = None) -> JobMeta:
        self.metas[meta.job_id] = meta
        if meta.owner is not None:
            self.owners.setdefault(meta.owner, []).append(meta.job_id)
        if totals is not None:
            self.counts[meta.job_id] = totals
        self.active.append(meta.job_id)
        return meta

    def _set(self, job_id: str, **fields: Any) -> JobMeta:
        meta = self.metas[job_id].model_copy(update=fields)
        self.metas[job_id] = meta
        return meta

    async def create_batch(self, meta: JobMeta, lease_s: float) -> None:
        self.calls.append(("create_batch", meta.job_id, lease_s))
        if meta.job_id in self.metas:
            raise InvalidInput(f"job {meta.job_id} already exists")
        self.put(meta)

    async def job_meta(self, job_id: str) -> JobMeta | None:
        return self.metas.get(job_id)

    async def totals(self, job_id: str) -> JobTotals:
        return self.counts.get(job_id, JobTotals())

    async def stop_job(self, job_id: str, reason: StopReason, settle_s: float, only_if_due: bool = False) -> JobState:
        self.calls.append(("stop_job", job_id, reason, settle_s, only_if_due))
        meta = self.metas[job_id]
        if meta.state == "validating":
            return self._set(job_id, state=reason, stop=reason, stop_at=time.time()).state
        if meta.state in ("submitting", "running"):
            return self._set(job_id, state="stopping", stop=reason, stop_at=time.time()).state
        return meta.state

    async def owner_batches(self, owner: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        ids = list(reversed(self.owners.get(owner, [])))
        if after is not None:
            if after not in ids:
                return [], False
            ids = ids[ids.index(after) + 1 :]
        return ids[:limit], len(ids) > limit

    async def active_batches(self) -> list[str]:
        return list(self.active)

    async def fail_job(self, job_id: str, reason: str, only_if_lease_expired: bool = False) -> bool:
        self.calls.append(("fail_job", job_id, reason, only_if_lease_expired))
        if only_if_lease_expired and job_id not in self.lease_expired:
            return False
        if self.metas[job_id].state not in ("validating", "submitting"):
            return False
        self._set(job_id, state="failed", failed_reason=reason, failed_at=time.time())
        return True

    async def fail_validation(self, job_id: str, reason: str, errors: list[LineError]) -> bool:
        self.calls.append(("fail_validation", job_id, reason, list(errors)))
        if self.metas[job_id].state != "validating":
            return False
        self._set(job_id, state="failed", failed_reason=reason, errors=list(errors), failed_at=time.time())
        return True

    async def renew_lease(self, job_id: str, lease_s: float = 60.0) -> bool:
        self.calls.append(("renew_lease", job_id))
        return self.renewable and self.metas[job_id].state in ("validating", "submitting")

    async def settle_overdue(self, job_id: str) -> JobState | None:
        self.calls.append(("settle_overdue", job_id))
        meta = self.metas[job_id]
        if meta.state != "stopping" or meta.stop is None:
            return None
        return self._set(job_id, state=meta.stop, settled_at=time.time()).state

    async def claim_finalize(self, job_id: str, ttl_s: float) -> bool:
        self.calls.append(("claim_finalize", job_id, ttl_s))
        return self.claims.get(job_id, True)

    async def mark_finalized(self, job_id: str, output_file_id: str | None, error_file_id: str | None) -> bool:
        self.calls.append(("mark_finalized", job_id, output_file_id, error_file_id))
        first = self.metas[job_id].finalized_at is None  # finalized before: nothing changes but the active set
        if first:
            self._set(job_id, finalized_at=time.time(), output_file_id=output_file_id, error_file_id=error_file_id)
        if job_id in self.active:
            self.active.remove(job_id)
        return first

    async def explored_pairs(self, job_id: str) -> tuple[list[Any], list[Any]]:
        return [], []

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


class FakeIndex:
    def __init__(self) -> None:
        self.records: dict[str, FileRecord] = {}

    async def add(self, record: FileRecord) -> None:
        self.records[record.id] = record

    async def get(self, file_id: str) -> FileRecord | None:
        return self.records.get(file_id)

    async def list(
        self,
        owner: str,
        *,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10_000,
        order: str = "desc",
    ) -> tuple[list[FileRecord], bool]:
        mine = sorted((r for r in self.records.values() if r.owner == owner), key=lambda r: (r.created_at, r.id))
        if order == "desc":
            mine.reverse()
        if after is not None:
            ids = [r.id for r in mine]
            if after not in ids:
                return [], False
            mine = mine[ids.index(after) + 1 :]
        mine = [r for r in mine if purpose is None or r.purpose == purpose]
        return mine[:limit], len(mine) > limit

    async def delete(self, file_id: str) -> FileRecord | None:
        return self.records.pop(file_id, None)


class FakeStorage:
    def __init__(self, chunk: int = 7) -> None:
        self.objects: dict[str, bytes] = {}
        self.chunk = chunk

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        data = b"".join([c async for c in chunks])  # raises before anything is stored
        self.objects[key] = data
        return len(data)

    async def get(self, key: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        if key not in self.objects:
            raise FileNotFoundError(key)
        data = self.objects[key]
        for i in range(0, len(data), self.chunk):
            yield data[i : i + self.chunk]

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def close(self) -> None:
        pass


@dataclass
class FakeIntakes:
    accepting: bool = True
    started: list[tuple[str, FileRecord, Any]] = field(default_factory=list)

    stop_on_start: bool = False  # the server begins stopping while the batch is recorded

    def start(self, job_id: str, input_file: FileRecord, planner: Any) -> None:
        if self.stop_on_start:
            raise ShuttingDown("the server is stopping")
        self.started.append((job_id, input_file, planner))


@dataclass
class FakePlanners:
    asked: list[PlanArgs | None] = field(default_factory=list)

    def for_batch(self, request: PlanArgs | None) -> Any:
        self.asked.append(request)
        return None if request is None else ("planner", request)


@dataclass
class Api:
    client: TestClient
    ctx: ApiContext
    store: FakeStore
    index: FakeIndex
    storage: FakeStorage
    intakes: FakeIntakes
    planners: FakePlanners


def api_settings(**kw: Any) -> ApiSettings:
    return ApiSettings(keys={key_hash(k): owner for owner, k in KEYS.items()}, **kw)


def make_api(clock: Any = None, **api: Any) -> Iterator[Api]:
    store, index, storage = FakeStore(), FakeIndex(), FakeStorage()
    intakes, planners = FakeIntakes(), FakePlanners()
    s = Settings(api=api_settings(**api))
    ctx = ApiContext(s, store, index, storage, Keys.from_settings(s.api), intakes, planners)  # type: ignore[arg-type]
    if clock is not None:
        ctx.clock = clock
    with TestClient(build_app(ctx), raise_server_exceptions=False) as client:
        yield Api(client, ctx, store, index, storage, intakes, planners)


def file_record(owner: str = "alice", file_id: str = "file-" + "0" * 24, **kw: Any) -> FileRecord:
    fields: dict[str, Any] = dict(
        id=file_id,
        owner=owner,
        filename="in.jsonl",
        purpose="batch",
        bytes=10,
        lines=2,
        created_at=1000.0,
        storage_key=file_id,
    )
    return FileRecord(**(fields | kw))
