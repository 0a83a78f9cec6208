"""``thinkroute``: run, submit, status, results, worker, stack, replay-server (and the routing tools).

Settings are read here, once per command, and passed down as plain arguments.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console

from workers.cli import console as out
from workers.cli import lag as cli_ops
from workers.cli.cascade import register as register_cascade
from workers.cli.routing import register as register_routing
from workers.errors import ThinkRouteError
from workers.runtime.eventloop import run_loop
from workers.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
worker_app = typer.Typer(no_args_is_help=True, help="Run one worker process (what compose runs).")
stack_app = typer.Typer(no_args_is_help=True, help="The embedded local stack.")
app.add_typer(worker_app, name="worker")
app.add_typer(stack_app, name="stack")
register_routing(app)  # train, classify, calibrate, eval
register_cascade(app)  # eval-cascade
app.command("lag")(cli_ops.lag)
err = Console(stderr=True, soft_wrap=True)

FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="batch JSONL file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="submit the valid lines even if some are bad")]


def _settings(level: str | None = None) -> Settings:
    s = Settings()
    logging.basicConfig(
        level=level or s.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # one line per HTTP request is noise at INFO (and would show URLs of every LLM call)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return s


def _read(file: Path, s: Settings, skip_invalid: bool) -> list[Any]:
    from workers.submit.batchfile import read_batch

    good, bad = read_batch(file, s.max_prompt_chars, s.max_tokens)
    for e in bad[:20]:
        err.print(f"[red]{file}: {e}[/red]", highlight=False)
    if len(bad) > 20:
        err.print(f"[red]... and {len(bad) - 20} more bad lines[/red]")
    if bad and not skip_invalid:
        raise typer.Exit(
            _fail(
                f"{len(bad)} invalid line(s) in {file}; nothing submitted (use --skip-invalid "
                f"to submit the {len(good)} valid ones)"
            )
        )
    if not good:
        raise typer.Exit(_fail(f"no valid request in {file}"))
    return good


def _fail(message: str) -> int:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return 2


@app.command()
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
    """Submit FILE, wait for every answer, print the summary (starts the embedded stack if no broker is set)."""
    s = _settings("WARNING")
    requests = _read(file, s, skip_invalid)
    try:
        summary = run_loop(_run(s, file, requests, output, inference_workers, time_scale, timeout, as_json))
    except ThinkRouteError as exc:
        raise typer.Exit(_fail(str(exc))) from exc
    out.print_summary(summary, as_json)


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
            with out.status(f"starting the embedded stack (logs in {stack.workdir})", quiet=as_json):
                env = await stack.start()
            s = s.model_copy(
                update={
                    "kafka_bootstrap": env["THINKROUTE_KAFKA_BOOTSTRAP"],
                    "redis_url": SecretStr(env["THINKROUTE_REDIS_URL"]),
                }
            )
            check = stack.check
        async with out.clients(s) as (producer, store):
            meta = await submit(producer, store, s.topics.prompts, requests, source=file.name)
            with out.progress_bar(meta.total, quiet=as_json) as advance:
                await wait_for_job(store, meta, progress=advance, check=check, timeout_s=timeout)
            result = await summary(store, meta, wall_s=time.time() - started)
            if output is not None:
                n = await write_results(store, meta.job_id, output)
                result["output"] = {"path": str(output), "lines": n}
        return result
    finally:
        if stack is not None:
            stack.stop()


@app.command()
def submit(file: FileArg, skip_invalid: SkipOpt = False) -> None:
    """Validate and submit FILE to the configured broker; prints the job id."""
    s = _settings("WARNING")
    if s.embedded:
        raise typer.Exit(_fail("THINKROUTE_KAFKA_BOOTSTRAP is not set (use `thinkroute run` for the embedded stack)"))
    requests = _read(file, s, skip_invalid)

    async def go() -> str:
        from workers.submit.jobs import submit as do_submit

        async with out.clients(s) as (producer, store):
            meta = await do_submit(producer, store, s.topics.prompts, requests, source=file.name)
            return meta.job_id

    typer.echo(asyncio.run(go()))


@app.command()
def status(job: str, as_json: JsonOpt = False) -> None:
    """Progress and totals of JOB, from Redis."""
    s = _settings("WARNING")

    async def go() -> dict[str, Any]:
        from workers.submit.jobs import summary

        async with out.clients(s, kafka=False) as (_, store):
            meta = await store.job_meta(job)
            if meta is None:
                raise ThinkRouteError(f"no job {job!r} in Redis")
            return await summary(store, meta)

    try:
        out.print_summary(asyncio.run(go()), as_json)
    except ThinkRouteError as exc:
        raise typer.Exit(_fail(str(exc))) from exc


@app.command()
def results(job: str, output: Annotated[Path, typer.Option("--output", "-o")]) -> None:
    """Write the results of JOB (OpenAI Batch output lines + route) to OUTPUT."""
    s = _settings("WARNING")

    async def go() -> int:
        from workers.submit.jobs import write_results

        async with out.clients(s, kafka=False) as (_, store):
            if await store.job_meta(job) is None:
                raise ThinkRouteError(f"no job {job!r} in Redis")
            return await write_results(store, job, output)

    try:
        n = asyncio.run(go())
    except ThinkRouteError as exc:
        raise typer.Exit(_fail(str(exc))) from exc
    err.print(f"wrote {n} results to {output}")


@worker_app.command("router")
def worker_router() -> None:
    """Consume prompts, classify, route (THINKROUTE_KAFKA_BOOTSTRAP required)."""
    from workers.router.serve import serve_router

    _serve(serve_router)


@worker_app.command("inference")
def worker_inference() -> None:
    """Consume routed prompts, call the LLM, store results in Redis."""
    from workers.inference.serve import serve_inference

    _serve(serve_inference)


def _serve(fn: Any) -> None:
    s = _settings()
    try:
        run_loop(fn(s))
    except ThinkRouteError as exc:
        raise typer.Exit(_fail(str(exc))) from exc


@stack_app.command("up")
def stack_up(
    inference_workers: Annotated[int, typer.Option(help="inference processes")] = 1,
    time_scale: Annotated[float, typer.Option(help="replay latency multiplier (0 = instant)")] = 1.0,
) -> None:
    """Run the embedded stack in the foreground; prints the environment to point clients at it."""
    s = _settings("INFO")

    async def go() -> None:
        from workers.classifier.cache import ensure_artifact
        from workers.local.stack import EmbeddedStack

        await asyncio.to_thread(ensure_artifact, s.cache_dir, True)
        stack = EmbeddedStack(s, inference_workers=inference_workers, replay_time_scale=time_scale)
        stop = asyncio.Event()
        try:
            env = await stack.start()
            for k, v in env.items():
                typer.echo(f"export {k}={v}")
            err.print("stack up; Ctrl-C stops it")
            from workers.runtime.process import install_stop_signals

            install_stop_signals(stop)
            while not stop.is_set():
                stack.check()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            stack.stop()

    asyncio.run(go())


@app.command("replay-server", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def replay_server(ctx: typer.Context) -> None:
    """The vLLM-compatible replay server (flags: see `thinkroute replay-server --help-server`)."""
    from workers.replay.server import main as replay_main

    args = ["--help" if a == "--help-server" else a for a in ctx.args]
    replay_main(args)


def main() -> None:
    app()
