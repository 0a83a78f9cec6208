"""``thinkroute stack up``: the embedded stack in the foreground."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from workers.cli import console
from workers.cli.common import JsonOpt, err, guarded, print_json, settings
from workers.errors import ServiceError

stack_app = typer.Typer(no_args_is_help=True, help="The embedded local stack.")


@stack_app.command("up")
@guarded
def stack_up(
    inference_workers: Annotated[int, typer.Option(help="inference processes")] = 1,
    time_scale: Annotated[float, typer.Option(help="replay latency multiplier (0 = instant)")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Run the embedded stack in the foreground; prints the environment to point clients at it.

    The Redis URL in it carries the stack's generated password: the stack is for the user who started it. It
    also serves the OpenAI Batch API (``thinkroute serve``): ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` (a key
    made for this stack) point the official SDK at it. With ``THINKROUTE_LLM_BASE_URL`` (or a route or model
    URL) set, no replay server starts: the workers send the requests to that server (with
    ``THINKROUTE_LLM_API_KEY``, which is not printed).
    """
    s = settings("INFO")

    async def go() -> None:
        from workers.cli.interrupt import in_daemon_thread
        from workers.cli.pipeline import ensure_classifier
        from workers.local.stack import EmbeddedStack
        from workers.runtime.process import install_stop_signals

        await in_daemon_thread(lambda: ensure_classifier(s.cache_dir, True))
        stack = EmbeddedStack(s, inference_workers=inference_workers, replay_time_scale=time_scale, api=True)
        stop = asyncio.Event()
        keep_logs = False
        try:
            # before the start (it is waited for without blocking the loop) and before the env is out: a
            # signal meanwhile, or from a client that has the env, stops the stack
            install_stop_signals(stop)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, stop.set)  # the terminal closed
            env = await stack.start()
            if stop.is_set():
                return
            if as_json:
                print_json(env)
            else:
                for k, v in env.items():
                    typer.echo(f"export {k}={v}")
            err.print(console.describe_llm(stack.llm), markup=False, highlight=False)
            err.print("stack up; Ctrl-C stops it")
            while not stop.is_set():
                stack.check()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        except ServiceError:
            keep_logs = True  # the error names the log of the service that died
            raise
        finally:
            stack.stop(keep_logs=keep_logs)

    asyncio.run(go())


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
