"""The job commands: ``run``, ``submit``, ``status``, ``results`` (``cancel``: ``workers.cli.cancel``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from workers.cli import console
from workers.cli.common import JsonOpt, err, fail, guarded, print_json, settings
from workers.cli.planning import ExploreOpt, SeedOpt, ShareOpt, TokensOpt, plan_args
from workers.errors import EXIT_FAILED, EXIT_INTERRUPTED, NotFound
from workers.runtime.eventloop import run_loop
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.submit.batchfile import InputRequest
    from workers.submit.stream import Checked

FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="batch JSONL file")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="submit the valid lines even if some are bad")]
SHOWN_BAD_LINES = 20


def read_requests(file: Path, s: Settings, skip_invalid: bool) -> list[Any]:
    """The valid requests of FILE; its bad lines named on stderr (exit 2 unless ``skip_invalid``)."""
    from workers.submit.batchfile import read_batch

    good, bad = read_batch(file, s.max_prompt_chars, s.max_tokens)
    for e in bad[:SHOWN_BAD_LINES]:
        err.print(f"{file}: {e}", style="red", highlight=False, markup=False)
    if len(bad) > SHOWN_BAD_LINES:
        err.print(f"... and {len(bad) - SHOWN_BAD_LINES} more bad lines", style="red")
    if bad and not skip_invalid:
        fail(
            f"{len(bad)} invalid line(s) in {file}; nothing submitted (use --skip-invalid "
            f"to submit the {len(good)} valid ones)"
        )
    if not good:
        fail(f"no valid request in {file}")
    return good


def check_requests(file: Path, s: Settings, skip_invalid: bool) -> Checked:
    """The check pass over FILE (``workers.submit.stream``): its bad lines named on stderr (exit 2 unless
    ``skip_invalid``); only the good requests' ids are kept."""
    from workers.submit.stream import check_file

    checked = check_file(file, s.max_prompt_chars, s.max_tokens)
    for e in checked.errors:
        err.print(f"{file}: {e}", style="red", highlight=False, markup=False)
    if checked.bad > len(checked.errors):
        err.print(f"... and {checked.bad - len(checked.errors)} more bad lines", style="red")
    if checked.bad and not skip_invalid:
        fail(
            f"{checked.bad} invalid line(s) in {file}; nothing submitted (use --skip-invalid "
            f"to submit the {len(checked.ids)} valid ones)"
        )
    if not checked.ids:
        fail(f"no valid request in {file}")
    return checked


def run(
    file: FileArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write results here (OpenAI Batch output)")
    ] = None,
    as_json: JsonOpt = False,
    skip_invalid: SkipOpt = False,
    skip_done: Annotated[
        Path | None,
        typer.Option(
            "--skip-done",
            exists=True,
            dir_okay=False,
            readable=True,
            help="a results file of an earlier run: skip the requests answered there and merge its lines into "
            "the output (default output: that file)",
        ),
    ] = None,
    inference_workers: Annotated[int, typer.Option(help="embedded stack: inference processes")] = 1,
    time_scale: Annotated[float, typer.Option(help="embedded stack: replay latency multiplier (0 = instant)")] = 1.0,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 3600.0,
    reasoning_share: ShareOpt = None,
    reasoning_tokens: TokensOpt = None,
    explore: ExploreOpt = 0.0,
    explore_seed: SeedOpt = 0,
) -> None:
    """Submit FILE, wait for every answer, print the summary (starts the embedded stack if no broker is set).

    Exits 1 when some requests failed, or when the job was cancelled (``thinkroute cancel``) or expired meanwhile
    (the summary is printed all the same; the answers are written, to results-JOB.partial.jsonl without
    --output). Ctrl-C (or SIGTERM, SIGHUP)
    stops within a few seconds, writes the results so far (to --output, else results-JOB.partial.jsonl),
    lists the missing ids beside them and prints how to continue; Ctrl-C again forces the stop.
    """
    from workers.cli.partial import check_writable, read_done, write_output
    from workers.cli.runjob import RunOptions, run_job, tell_stopped
    from workers.submit.stream import todo_ids

    planning = plan_args(reasoning_share, reasoning_tokens, explore, explore_seed)
    s = settings("WARNING", client=True)
    checked = check_requests(file, s, skip_invalid)
    earlier = read_done(skip_done) if skip_done is not None else {}
    output = output or skip_done
    if output is not None:
        check_writable(output)  # before anything is submitted
    todo = todo_ids(checked, earlier)
    if not todo:
        total = len(checked.ids)
        if output is not None and output != skip_done:
            run_loop(write_output(None, None, output, earlier, list(checked.ids)))
        err.print(f"all {total} requests of {file} are answered in {skip_done}: nothing to run")
        if as_json:
            print_json({"total": 0, "skipped": total, "output": str(output)})
        return
    opts = RunOptions(file, output, inference_workers, time_scale, timeout, as_json, skip_done, planning)
    summary = run_loop(run_job(s, opts, checked, todo, earlier))
    console.print_summary(summary, as_json)
    if "interrupted" in summary:
        fail(tell_stopped(summary), EXIT_INTERRUPTED)
    if summary.get("state") in ("cancelled", "expired"):
        kept = summary.get("output")
        written = f"; {kept['lines']} answers in {kept['path']}" if kept else ""
        fail(
            f"job {summary['job_id']} was {summary['state']}: {summary['stopped']} of {summary['total']} requests "
            f"were not run{written}",
            EXIT_FAILED,
        )
    if summary["failed"]:
        fail(f"job {summary['job_id']}: {summary['failed']} of {summary['total']} requests failed", EXIT_FAILED)


def submit(
    file: FileArg,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
    reasoning_share: ShareOpt = None,
    reasoning_tokens: TokensOpt = None,
    explore: ExploreOpt = 0.0,
    explore_seed: SeedOpt = 0,
) -> None:
    """Validate and submit FILE to the configured broker; prints the job id.

    With a budget the prompts are classified here first, with the router's classifier and policy, and each
    one's route is fixed in the job's plan (signed with the prompt)."""
    from workers.cli.planning import make_plan
    from workers.submit.stream import bodies, submit_file, todo_requests

    planning = plan_args(reasoning_share, reasoning_tokens, explore, explore_seed)
    s = settings("WARNING", client=True)
    if s.embedded:
        fail("THINKROUTE_KAFKA_BOOTSTRAP is not set (use `thinkroute run` for the embedded stack)")
    checked = check_requests(file, s, skip_invalid)
    todo = list(checked.ids)

    def requests() -> Iterator[InputRequest]:
        return todo_requests(checked, s.max_prompt_chars, s.max_tokens)

    plan = make_plan(s, todo, lambda: bodies(requests()), planning, quiet=as_json)

    async def go() -> tuple[str, int]:
        async with console.clients(s) as (producer, store):
            assert producer is not None
            meta = await submit_file(producer, store, s.topics.prompts, checked, requests(), todo, file.name, plan)
            return meta.job_id, meta.total

    job_id, total = asyncio.run(go())
    if as_json:
        out: dict[str, Any] = {"job_id": job_id, "total": total}
        if plan is not None and plan[0] is not None:
            out["plan"] = plan[0].model_dump(mode="json")
        print_json(out)
    else:
        typer.echo(job_id)


def status(job: str, as_json: JsonOpt = False) -> None:
    """Progress and totals of JOB, from Redis."""
    s = settings("WARNING")

    async def go() -> dict[str, Any]:
        from workers.submit.jobs import summary

        async with console.clients(s, kafka=False) as (_, store):
            meta = await store.job_meta(job)
            if meta is None:
                raise NotFound(f"no job {job!r} in Redis")
            return await summary(store, meta)

    console.print_summary(asyncio.run(go()), as_json)


def results(job: str, output: Annotated[Path, typer.Option("--output", "-o")], as_json: JsonOpt = False) -> None:
    """Write the results of JOB (OpenAI Batch output lines + route) to OUTPUT."""
    from workers.cli.partial import check_writable

    s = settings("WARNING")
    check_writable(output)

    async def go() -> int:
        from workers.submit.output import write_results

        async with console.clients(s, kafka=False) as (_, store):
            if await store.job_meta(job) is None:
                raise NotFound(f"no job {job!r} in Redis")
            return await write_results(store, job, output)

    n = asyncio.run(go())
    if as_json:
        print_json({"path": str(output), "lines": n})
    else:
        err.print(f"wrote {n} results to {output}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    for command in (run, submit, status, results):
        app.command()(guarded(command))
