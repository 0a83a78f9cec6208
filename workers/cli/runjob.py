"""What ``thinkroute run`` does: start the embedded stack if no broker is set, submit, wait, write results.

Every exit stops every child it started within a bounded time and removes the stack's directory:

* the job done: workers stopped with SIGTERM (they drain and commit), then the servers;
* an error: every child SIGKILLed (the logs stay when a service died: the error names its log);
* the first SIGINT, SIGTERM or SIGHUP: the workers get SIGTERM and ``GRACE_S`` to finish what they hold
  (SIGKILL after), the results collected so far are written (the missing ids listed beside them) and the
  command says how to finish the job; a second signal kills the workers at once; a third exits at once.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.batch import ChatBody
from workers.cli import console
from workers.cli.common import REDIS_ERRORS
from workers.cli.interrupt import Interrupted, StopSignals, in_daemon_thread
from workers.cli.partial import write_output
from workers.cli.pipeline import Pipeline, say
from workers.cli.planning import Plan, make_plan
from workers.router.plan import PlanArgs
from workers.settings import Settings
from workers.submit.stream import Checked, bodies, todo_requests

if TYPE_CHECKING:
    from workers.local.stack import EmbeddedStack
    from workers.store.jobstore import Store

GRACE_S = 3.0  # first stop signal: how long the workers get to finish the requests they hold
WRITE_TIMEOUT_S = 15.0  # reading the results so far from Redis and writing them


@dataclass(frozen=True)
class RunOptions:
    file: Path
    output: Path | None
    inference_workers: int
    time_scale: float
    timeout: float
    as_json: bool
    skip_done: Path | None = None
    plan: PlanArgs = field(default_factory=PlanArgs)


async def run_job(
    s: Settings, opts: RunOptions, checked: Checked, todo: list[str], earlier: dict[str, str]
) -> dict[str, Any]:
    """Run the custom ids ``todo`` (input order) of the checked file (``earlier``: results kept from
    ``--skip-done``); the requests are read from the file again as they are planned and published."""
    pipe = Pipeline(opts.inference_workers, opts.time_scale, quiet=opts.as_json)
    pipe.install()
    started = time.time()
    try:
        prompts = partial(_bodies, s, checked, earlier)
        plan = await in_daemon_thread(lambda: make_plan(s, todo, prompts, opts.plan, opts.as_json))  # before the stack
        s = await pipe.start(s)
        result = await _submit_and_wait(s, opts, checked, todo, earlier, pipe.stack, pipe.signals, started, plan)
    except BaseException as exc:
        if pipe.abort(exc):
            raise Interrupted(f"{pipe.signals.first}: stopped before the job was submitted; nothing to keep") from None
        raise
    finally:
        pipe.uninstall()
    pipe.finish(kill="interrupted" in result)  # interrupted: the results are out, nothing left is worth a wait
    return result


def llm_field(stack: EmbeddedStack | None) -> dict[str, Any]:
    """The summary's ``llm`` (`workers.local.llm.describe`): which backend the embedded stack's workers used.
    Against a configured broker the workers are the operator's: their settings, not ours, say."""
    return {"llm": stack.llm} if stack is not None else {}


def _bodies(s: Settings, checked: Checked, earlier: dict[str, str]) -> Iterator[ChatBody]:
    return bodies(todo_requests(checked, s.max_prompt_chars, s.max_tokens, earlier))


def _order(checked: Checked, earlier: dict[str, str]) -> list[str] | None:
    """The output's order: the whole file's ids when the job runs only some of them (``--skip-done``), else
    None (the job's order list in Redis)."""
    return list(checked.ids) if earlier else None


async def _submit_and_wait(
    s: Settings,
    opts: RunOptions,
    checked: Checked,
    todo: list[str],
    earlier: dict[str, str],
    stack: EmbeddedStack | None,
    signals: StopSignals,
    started: float,
    plan: Plan | None = None,
) -> dict[str, Any]:
    from workers.submit.jobs import summary, wait_for_job
    from workers.submit.stream import submit_file

    async with console.clients(s) as (producer, store):
        assert producer is not None
        meta = None
        try:
            requests = todo_requests(checked, s.max_prompt_chars, s.max_tokens, earlier)
            meta = await submit_file(producer, store, s.topics.prompts, checked, requests, todo, opts.file.name, plan)
            with console.progress_bar(meta.total, quiet=opts.as_json) as advance:
                check = stack.check if stack is not None else None
                await wait_for_job(store, meta, progress=advance, check=check, timeout_s=opts.timeout)
            result = await summary(store, meta, wall_s=time.time() - started) | llm_field(stack)
            output = opts.output
            if output is None and result["state"] in ("cancelled", "expired"):  # stopped from elsewhere: keep them
                output = Path(f"results-{meta.job_id}.partial.jsonl")
            if output is not None:
                written = await write_output(store, meta.job_id, output, earlier, _order(checked, earlier))
                result["output"] = {"path": str(written.path), "lines": written.lines}
        except BaseException as exc:
            if not signals.stopped(exc):
                raise
            if meta is None:
                raise Interrupted(f"{signals.first}: stopped while submitting the job; nothing to keep") from None
            order = _order(checked, earlier)
            return await _stop_early(opts, store, meta.job_id, order, earlier, stack, signals, started)
    if earlier:
        result["skipped"] = len(checked.ids) - len(todo)
    return result


async def _stop_early(
    opts: RunOptions,
    store: Store,
    job_id: str,
    order: list[str] | None,
    earlier: dict[str, str],
    stack: EmbeddedStack | None,
    signals: StopSignals,
    started: float,
) -> dict[str, Any]:
    """The first stop signal: workers stopped within ``GRACE_S``, the results so far written."""
    from workers.submit.jobs import summary

    if stack is not None:
        n = stack.running_workers()
        say(f"stopping: waiting up to {GRACE_S:g}s for {n} workers to finish their requests, Ctrl-C again to force")
        await stack.stop_workers(GRACE_S)
    else:
        say("stopping: writing the results so far (the workers go on with the job), Ctrl-C again to exit at once")
    path = opts.output or Path(f"results-{job_id}.partial.jsonl")
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            meta = await store.job_meta(job_id)
            if meta is None:
                raise OSError(f"job {job_id} is not in Redis any more")
            result = await summary(store, meta, wall_s=time.time() - started) | llm_field(stack)
            written = await write_output(store, job_id, path, earlier, order)
    except (OSError, TimeoutError, *REDIS_ERRORS) as exc:
        say(f"could not write the results so far to {path}: {exc}")
        raise Interrupted(f"job {job_id} stopped by {signals.first}; its results could not be written") from None
    result["interrupted"] = signals.first
    result["output"] = {"path": str(path), "lines": written.lines}
    result["missing"] = len(written.missing)
    result["missing_ids"] = str(written.missing_path) if written.missing_path else None
    if stack is not None:  # its broker and Redis go with it: run what is missing again
        result["continue"] = shlex.join(["thinkroute", "run", str(opts.file), "--skip-done", str(path)])
    else:  # the workers go on with the job
        result["continue"] = f"thinkroute status {job_id}; once done: thinkroute results {job_id} -o {path}"
    return result


def tell_stopped(result: dict[str, Any]) -> str:
    """Say what a stopped run kept and how to go on; returns the one-line error the command ends with."""
    out = result["output"]
    missing = result["missing"]
    say(f"wrote {out['lines']} results to {out['path']}")
    if missing:
        say(f"{missing} requests have no result yet; their custom_ids are in {result['missing_ids']}")
    say(f"to continue: {result['continue']}")
    return f"job {result['job_id']} stopped by {result['interrupted']}: {missing} requests without a result"
