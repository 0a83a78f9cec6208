"""A job's record and counters (``JobMeta`` + ``JobTotals``) as OpenAI's batch object (``schemas.api.Batch``).

Status (``JobMeta.state``, its ``stop`` and whether the files are written, ``finalized_at``)::

    validating                       validating (cancelling once a cancel is recorded)
    failed                           failed (errors: the line errors, or the reason)
    submitting | running             in_progress; cancelling if stop = cancelled; finalizing if stop = expired
    stopping                         cancelling (stop = cancelled) / finalizing (stop = expired)
    done                             finalizing until finalized, then completed
    cancelled                        cancelling until finalized, then cancelled
    expired                          finalizing until finalized, then expired

Where we differ from OpenAI: a terminal status (completed, cancelled, expired) is shown only once its output
and error files are written, so a client that sees it can always download them; OpenAI shows ``expired`` at
once and its files later. ``expired_at`` is shown from then on too.

Timestamps (whole seconds): created_at = submitted_at, in_progress_at = started_at, expires_at,
finalizing_at = settled_at (done), completed_at = finalized_at (done), failed_at, cancelling_at = stop_at
(cancel), cancelled_at = finalized_at (cancelled), expired_at = stop_at (expired, once finalized).

``request_counts``: total = the job's requests, completed and failed its results; the requests a cancel or
the expiry stopped are in neither (``thinkroute.stopped``: OpenAI counts them nowhere either). ``usage``: the
tokens of the routed answers and of escalated first attempts; the exploration sample's second answers are
in ``thinkroute.exploration`` only.
"""

from __future__ import annotations

from typing import Any

from schemas.api import (
    Batch,
    BatchErrors,
    BatchLineError,
    BatchStatus,
    BatchUsage,
    InputTokensDetails,
    OutputTokensDetails,
    RequestCounts,
)
from schemas.records import JobMeta, JobTotals
from workers.store.jobstore import ROUTES, TOKEN_KINDS
from workers.submit.jobs import exploration_summary, plan_summary

TERMINAL_STATUSES: tuple[BatchStatus, ...] = ("completed", "failed", "expired", "cancelled")


def batch_status(meta: JobMeta) -> BatchStatus:
    state, stop, finalized = meta.state, meta.stop, meta.finalized_at is not None
    if state == "validating":
        return "cancelling" if stop == "cancelled" else "validating"
    if state == "failed":
        return "failed"
    if state in ("submitting", "running") and stop is None:
        return "in_progress"
    if state in ("submitting", "running", "stopping"):
        return "finalizing" if stop == "expired" else "cancelling"
    if state == "done":
        return "completed" if finalized else "finalizing"
    if state == "cancelled":
        return "cancelled" if finalized else "cancelling"
    return "expired" if finalized else "finalizing"  # expired


def _ts(t: float | None) -> int | None:
    return None if t is None else int(t)


def usage(totals: JobTotals) -> BatchUsage:
    parts = [*(totals.routes.get(r) for r in ROUTES), totals.escalations]
    prompt = sum(p.prompt_tokens for p in parts if p is not None)
    completion = sum(p.completion_tokens for p in parts if p is not None)
    reasoning = sum(p.reasoning_tokens for p in parts if p is not None)
    return BatchUsage(
        input_tokens=prompt,
        input_tokens_details=InputTokensDetails(cached_tokens=0),
        output_tokens=completion,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
        total_tokens=prompt + completion,
    )


def errors(meta: JobMeta) -> BatchErrors | None:
    if meta.state != "failed":
        return None
    if meta.errors:
        return BatchErrors(
            data=[BatchLineError(code=e.code, message=e.message, param=e.param, line=e.line) for e in meta.errors]
        )
    return BatchErrors(data=[BatchLineError(code="batch_failed", message=meta.failed_reason or "the batch failed")])


def figures(meta: JobMeta, totals: JobTotals, savings: dict[str, Any] | None) -> dict[str, Any]:
    """``thinkroute``: what the batch object has no field for. ``savings``: ``{"savings", "savings_hint"}``
    once the batch is terminal (else both None)."""
    by_route = {
        r: {k.removesuffix("_tokens"): getattr(t, k) for k in TOKEN_KINDS}
        | {"completed": t.completed, "failed": t.failed}
        for r in ROUTES
        for t in [totals.routes.get(r)]
        if t is not None
    }
    return {
        "state": meta.state,
        "stop": meta.stop,
        "failed_reason": meta.failed_reason,
        "routes": {r: t.requests for r, t in sorted(totals.routes.items()) if r in ROUTES},
        "tokens_by_route": by_route,
        "escalations": totals.escalations.requests,
        "fallback": totals.fallback,
        "stopped": totals.stopped,
        "in_flight": totals.in_flight,
        "exploration": exploration_summary(meta, totals),
        "plan": plan_summary(meta.plan, totals, meta.total) if meta.plan is not None else None,
        **(savings or {"savings": None, "savings_hint": None}),
    }


def render_batch(meta: JobMeta, totals: JobTotals, savings: dict[str, Any] | None = None) -> Batch:
    """The batch object of an API batch (``meta.batch`` set)."""
    info = meta.batch
    assert info is not None, f"{meta.job_id} is not an API batch"
    status = batch_status(meta)
    done, finalized = meta.state == "done", meta.finalized_at is not None
    cancelled = meta.stop == "cancelled" or meta.state == "cancelled"
    return Batch(
        id=meta.job_id,
        endpoint=info.endpoint,
        errors=errors(meta),
        input_file_id=info.input_file_id,
        completion_window=info.completion_window,
        status=status,
        output_file_id=meta.output_file_id,
        error_file_id=meta.error_file_id,
        created_at=int(meta.submitted_at),
        in_progress_at=_ts(meta.started_at),
        expires_at=_ts(meta.expires_at),
        finalizing_at=_ts(meta.settled_at) if done else None,
        completed_at=_ts(meta.finalized_at) if done else None,
        failed_at=_ts(meta.failed_at) if meta.state == "failed" else None,
        expired_at=_ts(meta.stop_at) if meta.state == "expired" and finalized else None,
        cancelling_at=_ts(meta.stop_at) if cancelled else None,
        cancelled_at=_ts(meta.finalized_at) if meta.state == "cancelled" else None,
        request_counts=RequestCounts(total=meta.total, completed=totals.completed, failed=totals.failed),
        usage=usage(totals),
        metadata=info.metadata,
        thinkroute=figures(meta, totals, savings),
    )
