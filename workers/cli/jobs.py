"""The job commands: ``run``, ``submit``, ``status``, ``results``."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import SecretStr

from workers.cli import console
from workers.cli.common import JsonOpt, err, fail, guarded, print_json, settings
from workers.errors import EXIT_FAILED, NotFound, ServiceError
from workers.runtime.eventloop import run_loop
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.local.stack import EmbeddedStack

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


def run(
    file: FileArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write results here (OpenAI Batch output)")
    ] = None,
    as_json: JsonOpt = False,
    skip_invalid: SkipOpt = False,
    inference_workers: Annotated[int, typer.Option(help="embedded stack: inference processes")] = 1,
    time_scale: Annotated[float, typer.Option(help="embedded stack: replay latency multiplier (0 = instant)")] = 1.0,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 3600.0,
) -> None:
    """Submit FILE, wait for every answer, print the summary (starts the embedded stack if no broker is set).

    Exits 1 when some requests failed (the summary is printed all the same).
    """
    s = settings("WARNING", client=True)
    requests = read_requests(file, s, skip_invalid)
    summary = run_loop(_run(s, file, requests, output, inference_workers, time_scale, timeout, as_json))
    console.print_summary(summary, as_json)
    if summary["failed"]:
        fail(f"job {summary['job_id']}: {summary['failed']} of {summary['total']} requests failed", EXIT_FAILED)


async def _run(
    s: Settings,
    file: Path,
    requests: list[Any],
    output: Path | None,
    inference_workers: int,
    time_scale: float,
    timeout: float,
    as_json: bool,
) -> dict[str, Any]:
    from workers.classifier.cache import ensure_artifact
    from workers.local.stack import EmbeddedStack
    from workers.submit.jobs import submit, summary, wait_for_job, write_results

    stack = None
    check = None
    started = time.time()
    try:
        if s.embedded:
            await asyncio.to_thread(ensure_artifact, s.cache_dir, not as_json)
            stack = EmbeddedStack(s, inference_workers=inference_workers, replay_time_scale=time_scale)
            with console.status(f"starting the embedded stack (logs in {stack.workdir})", quiet=as_json):
                env = await stack.start()
            s = s.model_copy(
                update={
                    "kafka_bootstrap": env["THINKROUTE_KAFKA_BOOTSTRAP"],
                    "redis_url": SecretStr(env["THINKROUTE_REDIS_URL"]),
                }
            )
            check = stack.check
        async with console.clients(s) as (producer, store):
            assert producer is not None
            meta = await submit(producer, store, s.topics.prompts, requests, source=file.name)
            with console.progress_bar(meta.total, quiet=as_json) as advance:
                await wait_for_job(store, meta, progress=advance, check=check, timeout_s=timeout)
            result = await summary(store, meta, wall_s=time.time() - started)
            if output is not None:
                n = await write_results(store, meta.job_id, output)
                result["output"] = {"path": str(output), "lines": n}
    except BaseException as exc:
        if stack is not None:
            _abort(stack, keep_logs=isinstance(exc, ServiceError))
        raise
    if stack is not None:
        stack.stop()  # workers first, with SIGTERM: they drain and commit
    return result


def _abort(stack: EmbeddedStack, keep_logs: bool) -> None:
    """The job failed or was interrupted: nothing of the embedded stack is worth draining (its broker and
    Redis hold the job in memory only), and a worker waiting on a slow LLM would hold a graceful stop up.
    The logs stay when they explain the failure (a service died: the error names its log)."""
    for svc in [*stack.workers, *stack.services]:
        svc.stop(timeout=10, sig=signal.SIGKILL)
    stack.stop(keep_logs=keep_logs)


def submit(file: FileArg, skip_invalid: SkipOpt = False, as_json: JsonOpt = False) -> None:
    """Validate and submit FILE to the configured broker; prints the job id."""
    s = settings("WARNING", client=True)
    if s.embedded:
        fail("THINKROUTE_KAFKA_BOOTSTRAP is not set (use `thinkroute run` for the embedded stack)")
    requests = read_requests(file, s, skip_invalid)

    async def go() -> tuple[str, int]:
        from workers.submit.jobs import submit as do_submit

        async with console.clients(s) as (producer, store):
            assert producer is not None
            meta = await do_submit(producer, store, s.topics.prompts, requests, source=file.name)
            return meta.job_id, meta.total

    job_id, total = asyncio.run(go())
    if as_json:
        print_json({"job_id": job_id, "total": total})
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
    s = settings("WARNING")

    async def go() -> int:
        from workers.submit.jobs import write_results

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
