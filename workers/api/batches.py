"""``/v1/batches``: create (from an uploaded batch file), retrieve, list (newest first), cancel.

Create records the batch ``validating`` (``Store.create_batch``) and starts its intake in the background
(``workers.api.intakes``): validation, planning and publishing happen after the answer, as OpenAI's do.
Another owner's batch is answered exactly as a missing one (404)."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas.api import METADATA_KEY_MAX, METADATA_MAX_PAIRS, METADATA_VALUE_MAX, Batch, BatchCreate, BatchList
from schemas.records import BatchInfo, JobMeta, JobTotals
from workers.api.context import ApiContext, context, owner
from workers.api.ids import new_batch_id
from workers.api.intakes import STOPPED, ShuttingDown
from workers.api.planner import plan_request
from workers.api.problems import ApiError, int_param, json_response, no_such_batch, no_such_file, parse_json, str_param
from workers.api.render import TERMINAL_STATUSES, batch_status, render_batch
from workers.errors import InvalidInput
from workers.router.plan import PlanArgs
from workers.store.jobstore import LEASE_S

log = logging.getLogger(__name__)

CANCELLABLE = ("validating", "submitting", "running")
LIST_CONCURRENCY = 8  # batches of one list page read at once
SHUTTING_DOWN = "The server is shutting down and takes no new batch; retry in a moment."


def check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > METADATA_MAX_PAIRS:
        raise ApiError(400, f"Invalid 'metadata': at most {METADATA_MAX_PAIRS} pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_MAX:
            raise ApiError(
                400, f"Invalid 'metadata': keys are at most {METADATA_KEY_MAX} characters.", param="metadata"
            )
        if len(value) > METADATA_VALUE_MAX:
            raise ApiError(
                400, f"Invalid 'metadata': values are at most {METADATA_VALUE_MAX} characters.", param="metadata"
            )


async def _meta(ctx: ApiContext, request: Request, batch_id: str) -> JobMeta:
    meta = await ctx.store.job_meta(batch_id)
    if meta is None or meta.batch is None or meta.owner != owner(request):
        raise no_such_batch(batch_id)
    return meta


async def batch_object(ctx: ApiContext, meta: JobMeta) -> Batch:
    totals = await ctx.store.totals(meta.job_id)
    savings = None
    if batch_status(meta) in TERMINAL_STATUSES and meta.state != "failed":
        savings = await ctx.savings.get(ctx.store, meta, totals)
    return render_batch(meta, totals, savings)


async def bounded(ctx: ApiContext, ids: list[str]) -> list[Batch | None]:
    """Each batch's object (None for one whose record is gone), ``LIST_CONCURRENCY`` at a time: a page of 100
    under many pollers must not open a Redis connection per batch."""
    turns = asyncio.Semaphore(LIST_CONCURRENCY)

    async def one(job_id: str) -> Batch | None:
        async with turns:
            meta = await ctx.store.job_meta(job_id)
            return None if meta is None or meta.batch is None else await batch_object(ctx, meta)

    return list(await asyncio.gather(*(one(i) for i in ids)))


async def create(request: Request) -> Response:
    ctx = context(request)
    api = ctx.settings.api
    body = parse_json(await request.body(), BatchCreate)
    check_metadata(body.metadata)
    try:
        window_s = api.window_s(body.completion_window)
    except ValueError as exc:
        raise ApiError(400, f"Invalid value for 'completion_window': {exc}.", param="completion_window") from None
    try:
        plan: PlanArgs | None = plan_request(body.metadata)
    except InvalidInput as exc:
        raise ApiError(400, f"Invalid 'metadata': {exc}", param="metadata") from None
    record = await ctx.index.get(body.input_file_id)
    if record is None or record.owner != owner(request):
        raise no_such_file(body.input_file_id, param="input_file_id")
    if record.purpose != "batch":
        raise ApiError(400, f"File {record.id} has purpose {record.purpose!r}, not 'batch'.", param="input_file_id")
    if not ctx.intakes.accepting:
        raise ApiError(503, SHUTTING_DOWN, type="server_error", headers={"retry-after": "5"})
    planner = ctx.planners.for_batch(plan)
    now = ctx.clock()
    meta = JobMeta(
        job_id=new_batch_id(),
        total=0,
        source=record.filename,
        submitted_at=now,
        state="validating",
        owner=owner(request),
        batch=BatchInfo(
            input_file_id=record.id,
            endpoint=body.endpoint,
            completion_window=body.completion_window,
            metadata=body.metadata,
        ),
        expires_at=now + window_s,
    )
    await ctx.store.create_batch(meta, lease_s=LEASE_S)
    try:
        ctx.intakes.start(meta.job_id, record, planner)
    except ShuttingDown:  # the server began stopping while the batch was recorded
        await ctx.store.fail_validation(meta.job_id, STOPPED, [])
        raise ApiError(503, SHUTTING_DOWN, type="server_error", headers={"retry-after": "5"}) from None
    log.info("batch %s created by %s from %s (%d lines)", meta.job_id, meta.owner, record.id, record.lines)
    return json_response(render_batch(meta, JobTotals()))


async def retrieve(request: Request) -> Response:
    ctx = context(request)
    meta = await _meta(ctx, request, request.path_params["batch_id"])
    return json_response(await batch_object(ctx, meta))


async def list_batches(request: Request) -> Response:
    ctx = context(request)
    limit = int_param(request, "limit", ctx.settings.api.list_limit, 1, 100)
    ids, more = await ctx.store.owner_batches(owner(request), str_param(request, "after"), limit)
    data = [b for b in await bounded(ctx, ids) if b is not None]
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return json_response(BatchList(data=data, first_id=first, last_id=last, has_more=more))


async def cancel(request: Request) -> Response:
    ctx = context(request)
    meta = await _meta(ctx, request, request.path_params["batch_id"])
    status = batch_status(meta)
    if status in ("cancelling", "cancelled"):
        return json_response(await batch_object(ctx, meta))
    if meta.state not in CANCELLABLE or meta.stop is not None:
        raise ApiError(409, f"Cannot cancel a batch with status {status}.")
    state = await ctx.store.stop_job(meta.job_id, "cancelled", ctx.settings.api.settle_s)
    log.info("batch %s cancelled by %s: now %s", meta.job_id, meta.owner, state)
    after = await ctx.store.job_meta(meta.job_id) or meta
    if batch_status(after) not in ("cancelling", "cancelled"):  # it ended (or expired) first
        raise ApiError(409, f"Cannot cancel a batch with status {batch_status(after)}.")
    return json_response(await batch_object(ctx, after))


ROUTES = [
    Route("/v1/batches", create, methods=["POST"]),
    Route("/v1/batches", list_batches, methods=["GET"]),
    Route("/v1/batches/{batch_id}", retrieve, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
]
