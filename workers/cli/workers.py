"""``thinkroute worker router`` / ``thinkroute worker inference``: one worker process (what compose runs)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import typer

from workers.cli.common import edge, guarded, settings
from workers.runtime.eventloop import run_loop
from workers.settings import Settings

worker_app = typer.Typer(no_args_is_help=True, help="Run one worker process (what compose runs).")


@worker_app.command("router")
@guarded
def worker_router() -> None:
    """Consume prompts, classify, route (THINKROUTE_KAFKA_BOOTSTRAP required)."""
    from workers.router.serve import serve_router

    _serve(serve_router)


@worker_app.command("inference")
@guarded
def worker_inference() -> None:
    """Consume routed prompts, call the LLM, store results in Redis."""
    from workers.inference.serve import serve_inference

    _serve(serve_inference)


def _serve(fn: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    s = settings()
    with edge(s):
        run_loop(fn(s))


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
