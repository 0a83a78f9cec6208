"""``thinkroute``: run, submit, status, results, cancel, worker, stack, replay-server, lag (and the routing tools).

Settings are read once per command, in the command, and passed down as plain arguments. Every command is
registered through `workers.cli.common.guarded`, which turns the errors of `workers.errors` into one line on
stderr and the exit code below.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from workers.cli import (
    cancel,
    cascade,
    compare,
    jobs,
    lag,
    learn,
    records,
    replay,
    routing,
    serve,
    stack,
    tier,
    workers,
)

HELP = (
    "Route each prompt of a batch job to a reasoning or a direct LLM call, over Kafka: run, submit, status, "
    "results, cancel, compare, worker, stack, serve (the OpenAI Batch API), replay-server, lag, and the routing "
    "tools."
)
EPILOG = """Exit codes:

  0    done (run: every request completed)
  1    a runtime error, or (run) some requests failed
  2    usage error or bad input: batch-file lines, flag values, settings
  3    unreachable: the broker, Redis, an embedded service (died, or did not start)
  130  interrupted: Ctrl-C, SIGTERM or SIGHUP (run: the results so far are written)

A failure ends with one line on stderr: error: ..."""


def package_version() -> str:
    try:
        return version("thinkroute")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thinkroute {package_version()}")
        raise typer.Exit()


app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP, epilog=EPILOG)


@app.callback()
def _main(
    show_version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit"),
    ] = None,
) -> None:
    pass


jobs.register(app)  # run, submit, status, results
cancel.register(app)  # cancel
compare.register(app)  # compare
workers.register(app)  # worker router / inference
stack.register(app)  # stack up
replay.register(app)  # replay-server
lag.register(app)  # lag
routing.register(app)  # train, classify, calibrate, eval
cascade.register(app)  # eval-cascade
tier.register(app)  # eval-tier
learn.register(app)  # fit, eval-learning
records.register(app)  # records convert, records export
serve.register(app)  # serve, api-key new


def main() -> None:
    app()
