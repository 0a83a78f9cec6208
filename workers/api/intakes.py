"""The intakes of the batches this server created (``workers.submit.intake``), in the background, at most
``ApiSettings.intake_concurrency`` at once.

A batch waiting for its turn keeps its lease (renewed every quarter of it), so another replica's sweeper does
not fail it as abandoned. An intake that raises fails its batch with a reason the owner can act on (the
error itself is logged, not shown). At shutdown (``close``) the running intakes get a grace period to finish;
those still running then, and those still waiting, are failed: "the server stopped while the batch was being
submitted; create it again"."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.records import FileRecord
from workers.errors import ThinkRouteError
from workers.files.storage import FileStorage
from workers.settings import Settings
from workers.store.jobstore import LEASE_S, Store
from workers.submit.intake import Planner, intake

log = logging.getLogger(__name__)

STOPPED = "the server stopped while the batch was being submitted; create it again"
BROKEN = "the server could not submit the batch (an internal error, logged); create it again"
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


class ShuttingDown(ThinkRouteError):
    """A batch created while the server stops: it is not started."""


class Intakes:
    def __init__(
        self, producer: AIOKafkaProducer, store: Store, storage: FileStorage, s: Settings, lease_s: float = LEASE_S
    ) -> None:
        self.producer = producer
        self.store = store
        self.storage = storage
        self.s = s
        self.lease_s = lease_s
        self._turns = asyncio.Semaphore(s.api.intake_concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._spawn: Spawn = asyncio.create_task
        self._closing = False

    def bind(self, spawn: Spawn) -> None:
        """Run the intakes as tasks of the server's TaskGroup (``tg.create_task``)."""
        self._spawn = spawn

    @property
    def accepting(self) -> bool:
        return not self._closing

    @property
    def running(self) -> list[str]:
        return list(self._tasks)

    def start(self, job_id: str, input_file: FileRecord, planner: Planner | None) -> None:
        if self._closing:
            raise ShuttingDown("the server is stopping")
        task = self._spawn(self._run(job_id, input_file, planner))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _run(self, job_id: str, input_file: FileRecord, planner: Planner | None) -> None:
        try:
            if not await self._wait_turn(job_id):
                return
            try:
                state = await intake(self.producer, self.store, self.storage, self.s, job_id, input_file, planner)
            finally:
                self._turns.release()
            log.info("batch %s: intake ended, %s", job_id, state)
        except asyncio.CancelledError:
            await asyncio.shield(self._fail(job_id, STOPPED))
            raise
        except Exception:
            log.exception("batch %s: intake failed", job_id)
            await self._fail(job_id, BROKEN)

    async def _wait_turn(self, job_id: str) -> bool:
        """Take an intake turn, renewing the batch's lease meanwhile; False if the batch left ``validating``
        (cancelled, or failed by a sweeper) before its turn came."""
        while True:
            try:
                async with asyncio.timeout(self.lease_s / 4):
                    await self._turns.acquire()
                return True
            except TimeoutError:
                if not await self.store.renew_lease(job_id, self.lease_s):
                    meta = await self.store.job_meta(job_id)
                    if meta is None or meta.state != "validating":
                        log.info("batch %s left validating before its intake began", job_id)
                        return False

    async def _fail(self, job_id: str, reason: str) -> None:
        """Fail the batch, whether it was still validating or already submitting (a no-op once it is past)."""
        try:
            if not await self.store.fail_validation(job_id, reason, []):
                await self.store.fail_job(job_id, reason)
        except Exception as exc:  # Redis away too: the lease runs out and a sweeper fails it
            log.warning("batch %s: could not record its failure (%s); its lease will expire", job_id, exc)

    async def close(self, grace_s: float) -> None:
        """Refuse new intakes; wait up to ``grace_s`` for the running ones, then fail the rest."""
        self._closing = True
        tasks = list(self._tasks.values())
        if not tasks:
            return
        log.info("waiting up to %.0fs for %d batch intake(s)", grace_s, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
