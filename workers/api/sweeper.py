"""What moves the API's batches along when no request comes: one pass over the active batches every
``ApiSettings.sweep_s``, in ``serve``'s TaskGroup. Several replicas may sweep at once: every step is an
atomic script that acts only when its condition holds in Redis, and a batch's files are written by the one
replica holding its finalize lock.

Per batch (``Store.active_batches``):

* validating or submitting with an expired lease (the replica running its intake died): failed;
* submitting or running past ``expires_at``: stopped as expired (``only_if_due``: Redis's clock decides);
* stopping: settled once its settle deadline passed (answers still in flight are counted stopped);
* done, cancelled or expired, files not written: finalize (output and error files) under the lock;
* failed: retired from the active set (no files).

One batch's error is logged and the pass goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from schemas.records import FileRecord, JobMeta
from workers.api.intakes import STOPPED
from workers.files.storage import FileStorage
from workers.runtime.tasks import wait_event
from workers.settings import ApiSettings
from workers.store.files import FileIndex
from workers.store.jobstore import Store
from workers.submit.finalize import finalize

log = logging.getLogger(__name__)

LEASE_EXPIRED = STOPPED  # a dead server's batch: the reason its own shutdown would have given
FINALIZE_TTL_S = 300.0  # a finalize lock's life: another replica retries after it if the holder died
Finalize = Callable[[Store, FileIndex, FileStorage, str], Awaitable[tuple[FileRecord | None, FileRecord | None]]]


class Sweeper:
    def __init__(
        self,
        store: Store,
        index: FileIndex,
        storage: FileStorage,
        api: ApiSettings,
        *,
        finalize_fn: Finalize = finalize,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.index = index
        self.storage = storage
        self.api = api
        self.finalize_fn = finalize_fn
        self.clock = clock
        self._finalizing: dict[str, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until ``stop``; then wait for the files being written."""
        while not stop.is_set():
            await self.sweep()
            await wait_event(stop, self.api.sweep_s)
        await self.drain()

    async def drain(self) -> None:
        if self._finalizing:
            await asyncio.gather(*self._finalizing.values(), return_exceptions=True)

    async def sweep(self) -> None:
        """One pass over the active batches."""
        try:
            ids = await self.store.active_batches()
        except Exception as exc:
            log.warning("sweep: cannot list the active batches: %s", exc)
            return
        for job_id in ids:
            try:
                await self.visit(job_id)
            except Exception:
                log.exception("sweep: batch %s", job_id)

    async def visit(self, job_id: str) -> None:
        meta = await self.store.job_meta(job_id)
        if meta is None:
            log.warning("sweep: active batch %s has no record", job_id)
            return
        state = meta.state
        if state in ("validating", "submitting") and await self.store.fail_job(
            job_id, LEASE_EXPIRED, only_if_lease_expired=True
        ):
            log.warning("batch %s failed: its lease expired while %s", job_id, state)
            state = "failed"
        elif state in ("submitting", "running") and self._due(meta):
            state = await self.store.stop_job(job_id, "expired", self.api.settle_s, only_if_due=True)
            log.info("batch %s expired: now %s", job_id, state)
        elif state == "stopping":
            state = await self.store.settle_overdue(job_id) or state
        if state in ("done", "cancelled", "expired") and meta.finalized_at is None:
            await self._finalize(job_id)
        elif state == "failed" or meta.finalized_at is not None:
            # failed: no files to write; finalized already: its owner stopped between MARK_FINALIZED and the
            # removal from the active set (two keys, two steps in a cluster): removed now, nothing else changes
            await self.store.mark_finalized(job_id, None, None)

    def _due(self, meta: JobMeta) -> bool:
        return meta.stop is None and meta.expires_at is not None and meta.expires_at <= self.clock()

    async def _finalize(self, job_id: str) -> None:
        if job_id in self._finalizing or not await self.store.claim_finalize(job_id, FINALIZE_TTL_S):
            return
        task = asyncio.create_task(self._write_files(job_id), name=f"finalize:{job_id}")
        self._finalizing[job_id] = task
        task.add_done_callback(lambda _: self._finalizing.pop(job_id, None))

    async def _write_files(self, job_id: str) -> None:
        try:
            output, error = await self.finalize_fn(self.store, self.index, self.storage, job_id)
        except Exception:
            log.exception("batch %s: writing its files failed; retried once its lock expires", job_id)
            return
        log.info(
            "batch %s finalized: output %s (%d lines), errors %s (%d lines)",
            job_id,
            output.id if output else None,
            output.lines if output else 0,
            error.id if error else None,
            error.lines if error else 0,
        )
