"""``thinkroute cancel JOB``: stop a job (a CLI job or an API batch) in Redis, as ``POST /v1/batches/{id}/cancel``."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from workers.cli import console
from workers.cli.common import JsonOpt, guarded, out, print_json, settings
from workers.errors import InvalidInput

NOT_CANCELLABLE = ("done", "failed", "expired")


def cancel(job: str, as_json: JsonOpt = False) -> None:
    """Cancel JOB: none of its requests starts any more (the workers skip them: counted stopped), the answers
    already in flight are kept and counted. Prints the state after: stopping while answers are in flight
    (they are awaited up to THINKROUTE_API__SETTLE_S), then cancelled. Exit 2 for an unknown job, or one that
    is done, failed or expired."""
    s = settings("WARNING")

    async def go() -> dict[str, Any]:
        async with console.clients(s, kafka=False) as (_, store):
            state = await store.stop_job(job, "cancelled", settle_s=s.api.settle_s)  # NotFound: exit 2
            if state in NOT_CANCELLABLE:
                raise InvalidInput(f"job {job} is {state}: it cannot be cancelled")
            totals = await store.totals(job)
            meta = await store.job_meta(job)
        return {
            "job_id": job,
            "state": state,
            "total": meta.total if meta is not None else 0,
            "completed": totals.completed,
            "failed": totals.failed,
            "stopped": totals.stopped,
            "in_flight": totals.in_flight,
        }

    result = asyncio.run(go())
    if as_json:
        print_json(result)
        return
    waiting = f", {result['in_flight']} answers in flight" if result["state"] == "stopping" else ""
    out.print(
        f"job {job}: {result['state']} ({result['stopped']} of {result['total']} requests stopped{waiting}; "
        f"{result['completed']} completed, {result['failed']} failed)",
        highlight=False,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(guarded(cancel))
