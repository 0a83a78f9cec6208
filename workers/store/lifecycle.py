"""A job's lifecycle beyond submit (issue 15): API batches (validating), cancel, expiry, settling, finalizing,
and the owners' indexes of batches. A mixin of ``workers.store.jobstore.Store``; the scripts are in
``workers.store.lua``. STUB: signatures fixed, bodies to come."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.messages import PromptMessage
from schemas.records import JobMeta, JobState, LineError, StopReason


class Lifecycle:
    async def create_batch(self, meta: JobMeta, lease_s: float) -> None:
        """Record an API batch as ``validating`` (with ``meta.owner``, ``meta.batch``, ``meta.expires_at``) and a
        lease its intake renews; index it (``JOBS_INDEX``, its owner's batches, the active set). InvalidInput if
        the id exists."""
        raise NotImplementedError

    async def register_ids(self, job_id: str, request_ids: Sequence[str]) -> None:
        """Append request ids (input order) to the job's ids set and order list; called chunk by chunk while
        validating, before ``begin_submit``."""
        raise NotImplementedError

    async def begin_submit(self, job_id: str, record: JobMeta, secret: bytes, lease_s: float) -> bool:
        """validating -> submitting with the job's total, secret, plan (``record``); False when it is no longer
        validating (cancelled, or failed by a sweeper)."""
        raise NotImplementedError

    async def fail_validation(self, job_id: str, reason: str, errors: Sequence[LineError]) -> bool:
        """validating -> failed with the line errors (``JobMeta.errors``); False when not validating."""
        raise NotImplementedError

    async def stop_job(self, job_id: str, reason: StopReason, settle_s: float, only_if_due: bool = False) -> JobState:
        """Cancel (or expire: ``only_if_due`` checks ``expires_at`` against Redis's clock) a validating,
        submitting or running job: nothing of it starts any more, the requests not started are stopped, the
        state after is returned (``stopping`` while answers are in flight, else ``cancelled``/``expired``; the
        state unchanged when the job is already terminal or the expiry is not due)."""
        raise NotImplementedError

    async def skip(self, prompt: PromptMessage) -> bool:
        """The worker's answer to a ``stopped`` verdict: the request is counted stopped (once); True if it was
        counted now."""
        raise NotImplementedError

    async def settle_overdue(self, job_id: str) -> JobState | None:
        """A ``stopping`` job past its settle deadline: its answers still in flight are counted stopped (their
        late writes are refused) and it ends ``cancelled``/``expired``; None when not due."""
        raise NotImplementedError

    async def request_ids_in_order(self, job_id: str, start: int, count: int) -> list[str]:
        """``count`` request ids of the job from input position ``start`` (fewer at the end)."""
        raise NotImplementedError

    async def claim_finalize(self, job_id: str, ttl_s: float) -> bool:
        """Take the job's finalize lock (one ``serve`` replica writes its files); False when another holds it."""
        raise NotImplementedError

    async def mark_finalized(self, job_id: str, output_file_id: str | None, error_file_id: str | None) -> bool:
        """A settled job's files are written: record their ids and ``finalized_at``, leave the active set."""
        raise NotImplementedError

    async def active_batches(self) -> list[str]:
        raise NotImplementedError

    async def owner_batches(self, owner: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """The owner's batch ids, newest first, after the batch ``after`` (exclusive); and whether more follow.
        Unknown ``after`` (not the owner's): an empty page."""
        raise NotImplementedError
