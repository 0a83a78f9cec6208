"""``thinkroute records export JOB -o FILE``: a job's exploration sample as outcome records (``schemas.outcomes``),
one per explored request with both arms' outcomes (``workers.submit.outcomes``); what ``fit`` and ``eval`` read
(``--records FILE``) and ``records convert --from exploration`` merges."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workers.cli import console
from workers.cli.common import JsonOpt, err, guarded, print_json, settings
from workers.errors import NotFound

if TYPE_CHECKING:
    from schemas.outcomes import OutcomeRecord
    from workers.store.jobstore import Store


async def job_outcomes(store: Store, job: str) -> tuple[list[OutcomeRecord], int, dict[str, int]]:
    """A job's explored requests as outcome records, the number explored, and what was skipped and why."""
    from workers.submit.outcomes import outcomes_of

    if await store.job_meta(job) is None:
        raise NotFound(f"no job {job!r} in Redis")
    results, explorations = await store.explored_pairs(job)
    skipped: dict[str, int] = {}
    return outcomes_of(results, explorations, skipped), len(explorations), skipped


def export_outcomes(
    job: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="outcome records JSONL (.jsonl or .jsonl.xz)")],
    as_json: JsonOpt = False,
) -> None:
    """Write JOB's explored requests (routed answer + the other arm's) as outcome records to OUTPUT."""
    from workers.cli.partial import check_writable
    from workers.evaluation.outcomes import write_outcomes

    s = settings("WARNING")
    check_writable(output)

    async def go() -> dict[str, Any]:
        async with console.clients(s, kafka=False) as (_, store):
            records, explored, skipped = await job_outcomes(store, job)
        n = await asyncio.to_thread(write_outcomes, output, records)
        labels = [str((r.meta or {}).get("label")) for r in records]
        return {
            "path": str(output),
            "records": n,
            "explored": explored,
            "graded": labels.count("graded"),
            "agreement": labels.count("agreement"),
            "skipped": skipped,
        }

    stats = asyncio.run(go())
    if as_json:
        print_json(stats)
        return
    err.print(
        f"wrote {stats['records']} outcome records of {stats['explored']} explored requests to {output} "
        f"({stats['graded']} graded, {stats['agreement']} by agreement)",
        highlight=False,
        markup=False,
    )
    for why, n in sorted(stats["skipped"].items()):
        err.print(f"  skipped ({why}): {n}", highlight=False, markup=False)
    if not stats["explored"]:
        err.print("  the job has no exploration sample: submit with --explore 0.05", highlight=False, markup=False)


def register(records_app: typer.Typer) -> None:
    records_app.command("export")(guarded(export_outcomes))
