"""An API batch from its stored input file to the prompts topic, streamed: validate every line, register the
request ids, plan, publish, start.

The input object is copied once to a private temporary file, then read line by line three times (validation,
planning, publishing): what stays in memory is the custom ids (for duplicates, the registration and the
planner) and one chunk of lines, whatever the file's size. The CPU work of a chunk (parsing, encoding,
signing) runs in a thread, so the API's event loop keeps answering meanwhile. The batch's lease is renewed
after every chunk (and at least every ``LEASE_S / 4`` while waiting): a renewal refused means the batch was
cancelled (or failed) meanwhile, and intake stops where it is and returns the state the batch is in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer

from schemas.chat import ChatBody, Limits
from schemas.messages import PromptPlan
from schemas.records import FileRecord, JobMeta, JobPlan, LineError
from workers.errors import BadInput, NotFound
from workers.files.storage import FileStorage
from workers.settings import Settings
from workers.store.integrity import new_secret, request_id
from workers.store.jobstore import LEASE_S, Store
from workers.submit.batchfile import InputRequest, check_request_line, request_lines
from workers.submit.encode import encode_prompts, message_limit
from workers.submit.jobs import _retrieve
from workers.submit.validate import Validation

log = logging.getLogger(__name__)

CHUNK = 500  # lines parsed, encoded and published per step
REGISTER_CHUNK = 1000  # request ids per ``register_ids`` call
MAX_PENDING = 2000  # prompts sent and not yet acknowledged, at most
T = TypeVar("T")


class Planner(Protocol):
    """The job's planning pass (built by the API from the batch's metadata: budget, exploration), run in a thread:
    the custom ids in input order and an iterable over the bodies in the same order (it may be iterated once)."""

    def __call__(
        self, custom_ids: Sequence[str], bodies: Iterable[ChatBody]
    ) -> tuple[JobPlan | None, list[PromptPlan | None]]: ...


class _Stopped(Exception):
    """The batch's lease was refused: it was cancelled, expired or failed meanwhile."""


class _Lease:
    """The batch's lease, renewed after each chunk (``renew``) and while waiting (``renew_if_due``)."""

    every = LEASE_S / 4

    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.due = time.monotonic() + self.every

    async def renew(self) -> None:
        self.due = time.monotonic() + self.every
        if not await self.store.renew_lease(self.job_id):
            raise _Stopped

    async def renew_if_due(self) -> None:
        if time.monotonic() >= self.due:
            await self.renew()


async def intake(
    producer: AIOKafkaProducer,
    store: Store,
    storage: FileStorage,
    s: Settings,
    job_id: str,
    input_file: FileRecord,
    planner: Planner | None = None,
) -> str:
    """Validate, register, publish and start the ``validating`` batch ``job_id``; returns its state after
    (``running``/``done``; ``failed`` with line errors; ``cancelled``/``stopping`` if cancelled meanwhile)."""
    meta = await store.job_meta(job_id)
    if meta is None:
        raise NotFound(f"batch {job_id} does not exist")
    if meta.state != "validating":
        return meta.state
    endpoint = meta.batch.endpoint if meta.batch is not None else "/v1/chat/completions"
    limits = Limits(s.max_prompt_chars, s.max_tokens)
    lease = _Lease(store, job_id)
    fd, name = tempfile.mkstemp(prefix="thinkroute-intake-", suffix=".jsonl")  # 0600: private
    path = Path(name)
    submitting = False
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in storage.get(input_file.storage_key):
                f.write(chunk)
                await lease.renew_if_due()
        check = Validation(path, limits, job_id, message_limit(producer), endpoint, s.api.max_file_lines)
        try:
            while not await _step(check.step, CHUNK):
                await lease.renew()
        finally:
            check.close()
        if check.errors:
            await store.fail_validation(job_id, check.reason(), check.errors)
            return await _state(store, job_id)
        custom_ids = check.custom_ids
        del check  # its set of ids
        for i in range(0, len(custom_ids), REGISTER_CHUNK):
            await store.register_ids(job_id, [request_id(job_id, c) for c in custom_ids[i : i + REGISTER_CHUNK]])
            await lease.renew()
        job_plan, plans = (None, None) if planner is None else await _plan(planner, custom_ids, path, limits, lease)
        secret = new_secret()
        record = meta.model_copy(update={"total": len(custom_ids), "plan": job_plan})
        del custom_ids
        if not await store.begin_submit(job_id, record, secret, LEASE_S):
            return await _state(store, job_id)
        submitting = True
        await _publish(producer, s.topics.prompts, record, path, limits, secret, plans, lease)
        return await store.start_job(job_id) or await _state(store, job_id)
    except _Stopped:
        log.info("batch %s: stopped during intake (cancelled or failed meanwhile)", job_id)
        return await _state(store, job_id)
    except BaseException as exc:  # Ctrl-C and a server shutdown too: the batch must not stay half taken in
        await _fail(store, job_id, submitting, exc)
        if not isinstance(exc, Exception):
            raise
        return await _state(store, job_id)
    finally:
        _remove(path)


async def _step(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread; cancelled, it still waits for the thread to end (one chunk's work), so the
    reader the thread advances is never closed under it."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise


def _remove(path: Path) -> None:
    """Delete the private copy (one unlink: not worth a thread, and it must run even when cancelled)."""
    path.unlink(missing_ok=True)


async def _state(store: Store, job_id: str) -> str:
    meta = await store.job_meta(job_id)
    return meta.state if meta is not None else "failed"


async def _fail(store: Store, job_id: str, submitting: bool, exc: BaseException) -> None:
    """Record an intake that broke (the input file gone, the broker or Redis failing, the server stopping): the
    batch is failed, with a reason its owner can act on (the error itself is logged, not shown)."""
    stage = "publishing the batch's requests" if submitting else "reading the input file"
    if isinstance(exc, FileNotFoundError):
        reason = "the batch's input file is no longer stored"
    elif not isinstance(exc, Exception):
        reason = f"the server stopped while {stage}; create the batch again"
    else:
        reason = f"{stage} failed ({type(exc).__name__}); create the batch again"
    log.warning("batch %s: %s: %s", job_id, reason, exc, exc_info=isinstance(exc, Exception))
    try:
        if submitting:
            await store.fail_job(job_id, reason)
        else:
            await store.fail_validation(job_id, reason, [LineError(code="intake_failed", message=reason)])
    except Exception as err:  # Redis away too: the lease runs out and the sweeper fails the batch
        log.warning("batch %s: could not record the failure (%s); it fails when its lease expires", job_id, err)


async def _plan(
    planner: Planner, custom_ids: Sequence[str], path: Path, limits: Limits, lease: _Lease
) -> tuple[JobPlan | None, list[PromptPlan | None]]:
    """The planner over the file's bodies in a thread, the lease renewed meanwhile; a refused renewal makes
    the bodies' iterator raise, so the thread ends soon after."""
    stop = threading.Event()

    def bodies() -> Iterator[ChatBody]:
        for req in _requests(path, limits):
            if stop.is_set():
                raise _Stopped
            yield req.body

    task = asyncio.ensure_future(asyncio.to_thread(planner, custom_ids, bodies()))
    task.add_done_callback(_retrieve)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=lease.every)
            if not task.done():
                await lease.renew()
    except BaseException:
        stop.set()
        raise
    job_plan, plans = task.result()
    if len(plans) != len(custom_ids):
        raise ValueError(f"the planner returned {len(plans)} plans for {len(custom_ids)} requests")
    return job_plan, plans


def _requests(path: Path, limits: Limits) -> Generator[InputRequest]:
    """The requests of a file that validated (a line that no longer does: the file changed underneath)."""
    lines = request_lines(path)
    try:
        for number, raw in lines:
            req = raw if isinstance(raw, BadInput) else check_request_line(raw, number, limits)
            if not isinstance(req, InputRequest):
                raise RuntimeError(f"line {number} of the intake's copy of the input file changed after validation")
            yield req
    finally:
        lines.close()


async def _publish(
    producer: AIOKafkaProducer,
    topic: str,
    meta: JobMeta,
    path: Path,
    limits: Limits,
    secret: bytes,
    plans: Sequence[PromptPlan | None] | None,
    lease: _Lease,
) -> None:
    """Send every prompt, chunk by chunk, with at most ``MAX_PENDING`` unacknowledged; wait for every ack."""
    limit = message_limit(producer)
    reader = _requests(path, limits)
    pending: set[asyncio.Future[Any]] = set()
    sent = 0

    def encode_next() -> list[tuple[bytes, bytes]]:
        chunk = [req for _, req in zip(range(CHUNK), reader, strict=False)]
        chunk_plans = None if plans is None else plans[sent : sent + len(chunk)]
        return encode_prompts(meta.job_id, chunk, meta.submitted_at, secret, limit, chunk_plans)

    try:
        while encoded := await _step(encode_next):
            for key, value in encoded:
                fut = await producer.send(topic, value, key=key)
                fut.add_done_callback(_retrieve)
                pending.add(fut)
            sent += len(encoded)
            acked = {fut for fut in pending if fut.done()}
            pending -= acked
            for fut in acked:
                fut.result()  # the first broker error ends the publishing
            await lease.renew()
            while len(pending) >= MAX_PENDING:
                pending = await _acks(pending, lease, asyncio.FIRST_COMPLETED)
        while pending:
            pending = await _acks(pending, lease, asyncio.FIRST_EXCEPTION)
    except Exception as exc:
        if not isinstance(exc, _Stopped):
            log.warning("batch %s: publishing failed after %d of %d prompts were sent", meta.job_id, sent, meta.total)
        raise
    finally:
        reader.close()


async def _acks(pending: set[asyncio.Future[Any]], lease: _Lease, when: str) -> set[asyncio.Future[Any]]:
    """Wait a while for acks (the first broker error is raised); the ones still pending."""
    done, still = await asyncio.wait(pending, timeout=lease.every, return_when=when)
    for fut in done:
        fut.result()
    await lease.renew_if_due()
    return still
