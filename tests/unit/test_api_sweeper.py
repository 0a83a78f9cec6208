"""The sweeper's pass over the active batches (fakes): what it asks of the store for each state, one batch's
error not stopping the pass, and finalize run once under the lock."""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.records import BatchInfo, FileRecord, JobMeta, JobState
from tests.helpers import until
from tests.unit.api_fakes import FakeIndex, FakeStorage, FakeStore
from workers.api.sweeper import FINALIZE_TTL_S, LEASE_EXPIRED, Sweeper
from workers.settings import ApiSettings

NOW = 10_000.0


def batch(job_id: str, state: JobState, **kw: Any) -> JobMeta:
    return JobMeta(
        job_id=job_id,
        total=3,
        source="f",
        submitted_at=NOW - 100,
        state=state,
        owner="alice",
        batch=BatchInfo(input_file_id="file-x"),
        **kw,
    )


class Finalizer:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.jobs: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, store: Any, index: Any, storage: Any, job_id: str) -> tuple[FileRecord | None, None]:
        self.jobs.append(job_id)
        await self.release.wait()
        await self.store.mark_finalized(job_id, "file-out", None)
        return None, None


def sweeper(store: FakeStore, finalizer: Finalizer) -> Sweeper:
    return Sweeper(
        store,
        FakeIndex(),
        FakeStorage(),
        ApiSettings(settle_s=7.0),
        finalize_fn=finalizer,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )


async def test_each_state_gets_its_step() -> None:
    store = FakeStore()
    store.put(batch("b-validating-dead", "validating"))
    store.put(batch("b-validating-alive", "validating"))
    store.put(batch("b-submitting-dead", "submitting"))
    store.put(batch("b-running-due", "running", expires_at=NOW - 1))
    store.put(batch("b-running-not-due", "running", expires_at=NOW + 1))
    store.put(batch("b-stopping", "stopping", stop="cancelled"))
    store.put(batch("b-done", "done"))
    store.put(batch("b-failed", "failed"))
    store.lease_expired = {"b-validating-dead", "b-submitting-dead"}
    finalizer = Finalizer(store)
    sw = sweeper(store, finalizer)
    await sw.sweep()
    await sw.drain()

    assert {c[1]: c[2:] for c in store.named("fail_job")} == {
        "b-validating-dead": (LEASE_EXPIRED, True),
        "b-validating-alive": (LEASE_EXPIRED, True),
        "b-submitting-dead": (LEASE_EXPIRED, True),
    }
    assert store.metas["b-validating-dead"].state == store.metas["b-submitting-dead"].state == "failed"
    assert store.metas["b-validating-alive"].state == "validating"
    assert store.named("stop_job") == [("stop_job", "b-running-due", "expired", 7.0, True)]
    assert store.named("settle_overdue") == [("settle_overdue", "b-stopping")]
    # the stopping batch settled to cancelled in this pass, so it is finalized with the done one
    assert sorted(finalizer.jobs) == ["b-done", "b-stopping"]
    assert sorted(c[1] for c in store.named("claim_finalize")) == ["b-done", "b-stopping"]
    assert all(c[2] == FINALIZE_TTL_S for c in store.named("claim_finalize"))
    failed_retired = {c[1] for c in store.named("mark_finalized") if c[2] is None}
    assert failed_retired == {"b-failed", "b-validating-dead", "b-submitting-dead"}
    assert set(await store.active_batches()) == {"b-validating-alive", "b-running-due", "b-running-not-due"}


async def test_finalize_runs_once_and_only_under_the_lock() -> None:
    store = FakeStore()
    store.put(batch("b1", "done"))
    store.put(batch("b2", "expired", stop="expired"))
    store.put(batch("b3", "done", finalized_at=NOW))
    store.claims = {"b2": False}  # another replica holds it
    finalizer = Finalizer(store)
    finalizer.release.clear()
    sw = sweeper(store, finalizer)
    await sw.sweep()
    await until(lambda: finalizer.jobs == ["b1"])
    await sw.sweep()  # b1 is still being written: not claimed again
    assert [c[1] for c in store.named("claim_finalize")] == ["b1", "b2", "b2"]
    finalizer.release.set()
    await sw.drain()
    assert finalizer.jobs == ["b1"] and store.metas["b1"].output_file_id == "file-out"
    # b3 was finalized but left in the active set (its serve stopped between the two steps): only removed
    assert ("mark_finalized", "b3", None, None) in store.calls and "b3" not in await store.active_batches()
    assert store.metas["b3"].finalized_at == NOW


async def test_one_batchs_error_does_not_stop_the_pass() -> None:
    store = FakeStore()
    store.put(batch("b-bad", "stopping", stop="cancelled"))
    store.put(batch("b-good", "failed"))

    async def broken(job_id: str) -> None:
        raise ConnectionError("boom")

    store.settle_overdue = broken  # type: ignore[method-assign]
    sw = sweeper(store, Finalizer(store))
    await sw.sweep()
    assert store.named("mark_finalized") == [("mark_finalized", "b-good", None, None)]


async def test_run_sweeps_until_stopped() -> None:
    store = FakeStore()
    store.put(batch("b1", "failed"))
    stop = asyncio.Event()
    sw = sweeper(store, Finalizer(store))
    task = asyncio.create_task(sw.run(stop))
    await until(lambda: store.named("mark_finalized") != [])
    stop.set()
    await asyncio.wait_for(task, 5)
    assert store.named("mark_finalized") == [("mark_finalized", "b1", None, None)]
