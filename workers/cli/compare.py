"""``thinkroute compare FILE --policies router,always,never``: the same file through the whole pipeline once
per policy, side by side (issue 14, section 6).

One pipeline (the embedded stack, started once, or the configured broker and Redis, as for ``run``) answers
one job per policy, submitted one after another. A policy is an arm of the paper's benchmark, carried by the
job's plan (`schemas.messages.PromptPlan`, signed with each prompt):

* ``router``: no plan, the router's policy decides each prompt;
* ``always`` / ``never``: every prompt planned to reasoning / direct (the router still classifies: the
  category, the rule's model and effort for that route);
* ``share=S`` / ``tokens=N``: a job budget, planned by `workers.router.plan` before the pipeline starts.

Per arm: accuracy where the requests carry a reference (``metadata.reference``; the result's ``grade`` when
the inference worker graded it, else `workers.grading` on its answer; a failed request counts as
wrong), with a Wilson 95% interval; tokens (prompt, completion, reasoning; escalated first attempts
included); latency p50/p95/p99 (submit to stored, `Store.latency_percentiles`); the job's wall time (submit
to its last result).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from schemas.messages import PromptPlan, Route
from schemas.records import JobMeta, JobPlan, RequestResult
from workers import grading
from workers.cli import console
from workers.cli.common import JsonOpt, fail, guarded, out, print_json, settings
from workers.cli.interrupt import Interrupted, in_daemon_thread
from workers.cli.jobs import FileArg, SkipOpt, read_requests
from workers.cli.pipeline import Pipeline, say
from workers.cli.planning import Plan, make_plans
from workers.errors import EXIT_FAILED, InvalidInput
from workers.router.plan import Budget, PlanArgs
from workers.runtime.eventloop import run_loop
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest

FORCED: dict[str, Route] = {"always": "reasoning", "never": "direct"}
BUDGETS = ("share=", "tokens=")
Z95 = 1.959964


@dataclass(frozen=True)
class Arm:
    name: str  # as given: router, always, never, share=S, tokens=N
    route: Route | None = None  # the route every prompt is planned to (always, never)
    budget: Budget | None = None  # share=S, tokens=N: planned by the planning pass (`workers.router.plan`)


def parse_policies(text: str) -> list[Arm]:
    """The arms of ``--policies``, in order; InvalidInput (exit 2) for an unknown, repeated or empty one."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or "" in names:
        raise InvalidInput(f"--policies {text!r}: a comma-separated list such as router,always,never")
    if len(set(names)) != len(names):
        raise InvalidInput(f"--policies {text!r}: a policy is named twice")
    arms = []
    for name in names:
        if name == "router" or name in FORCED:
            arms.append(Arm(name, FORCED.get(name)))
        elif name.startswith(BUDGETS):
            arms.append(Arm(name, budget=Budget.parse(name)))  # InvalidInput for a bad value
        else:
            raise InvalidInput(f"--policies: unknown policy {name!r} (router, always, never, share=S, tokens=N)")
    return arms


def arm_plan(arm: Arm, requests: list[InputRequest]) -> tuple[JobPlan, list[PromptPlan | None]] | None:
    """The job plan of an arm: None for ``router`` (the policy decides), every prompt on one route else."""
    if arm.route is None:
        return None
    n = len(requests)
    job = JobPlan(budget=arm.name, planned_reasoning=n if arm.route == "reasoning" else 0)
    return job, [PromptPlan(route=arm.route, budget=arm.name) for _ in requests]


def reference_of(req: InputRequest) -> str | None:
    """The request's reference (``metadata.reference``, or ``answer``), as ``workers.grading`` reads it."""
    found = grading.reference_of(req.body)
    return found[0].strip() if found else None


def correct(result: RequestResult | None, reference: str) -> bool:
    """Whether a result answers its reference: the inference worker's grade, else ``workers.grading.grade``
    of its answer (a result stored before grading existed); a failed or missing result is wrong."""
    if result is None or result.status != "completed":
        return False
    if result.grade is not None:
        return result.grade.correct
    return grading.grade(result.answer, reference).correct


def wilson(k: int, n: int) -> list[float] | None:
    """Wilson score 95% interval of k successes in n."""
    if n == 0:
        return None
    p, z2 = k / n, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


async def arm_row(store: Store, meta: JobMeta, arm: Arm, requests: list[InputRequest], wall_s: float) -> dict[str, Any]:
    """One column of the comparison, from the job's counters and results in Redis."""
    from workers.submit.jobs import summary

    s = await summary(store, meta, wall_s=wall_s)
    results = {r.custom_id: r async for r in store.results(meta.job_id)}
    refs = {r.custom_id: ref for r in requests if (ref := reference_of(r)) is not None}
    k = sum(correct(results.get(cid), ref) for cid, ref in refs.items())
    n = len(refs)
    return {
        "policy": arm.name,
        "job_id": meta.job_id,
        "total": s["total"],
        "completed": s["completed"],
        "failed": s["failed"],
        "routes": s["routes"],
        "reasoning_share": round(s["routes"]["reasoning"] / s["total"], 4) if s["total"] else None,
        "graded": n,
        "correct": k,
        "accuracy": round(k / n, 4) if n else None,
        "ci95": wilson(k, n),
        "tokens": s["tokens"],
        "latency_s": s["latency_s"],
        "wall_s": s["wall_s"],
    }


@dataclass(frozen=True)
class CompareOptions:
    file: Path
    arms: list[Arm]
    inference_workers: int
    time_scale: float
    timeout: float
    as_json: bool


async def run_compare(s: Settings, opts: CompareOptions, requests: list[InputRequest]) -> dict[str, Any]:
    """Start the pipeline once, run one job per arm, one after another; stop the pipeline on every exit."""
    pipe = Pipeline(opts.inference_workers, opts.time_scale, quiet=opts.as_json)
    pipe.install()
    current = "planning"
    try:
        budgeted = [arm for arm in opts.arms if arm.budget is not None]
        planned = await in_daemon_thread(
            partial(
                make_plans,
                s,
                [r.custom_id for r in requests],
                lambda: (r.body for r in requests),
                [PlanArgs(arm.budget) for arm in budgeted],
                opts.as_json,
            )
        )  # before the stack starts, as `run` does; one classification for every budget arm
        plans: dict[str, Plan | None] = dict(zip((a.name for a in budgeted), planned, strict=True))
        plans |= {arm.name: arm_plan(arm, requests) for arm in opts.arms if arm.budget is None}
        current = "starting"
        s = await pipe.start(s)
        await pipe.ready()  # the first arm's latency is not the workers' start
        rows = []
        async with console.clients(s) as (producer, store):
            assert producer is not None
            from workers.submit.jobs import submit, wait_for_job

            for arm in opts.arms:
                current = arm.name
                started = time.time()
                meta = await submit(
                    producer, store, s.topics.prompts, requests, source=opts.file.name, plan=plans[arm.name]
                )
                if not opts.as_json:
                    say(f"{arm.name}: job {meta.job_id}")
                with console.progress_bar(meta.total, quiet=opts.as_json) as advance:
                    await wait_for_job(store, meta, progress=advance, check=pipe.check, timeout_s=opts.timeout)
                rows.append(await arm_row(store, meta, arm, requests, time.time() - started))
    except BaseException as exc:
        if pipe.abort(exc):
            raise Interrupted(f"{pipe.signals.first}: compare stopped at {current}; nothing compared") from None
        raise
    finally:
        pipe.uninstall()
    pipe.finish()
    return {"file": str(opts.file), "total": len(requests), "arms": rows}


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(report: dict[str, Any]) -> None:
    arms = report["arms"]
    table = Table("", *(a["policy"] for a in arms), title=f"{report['file']}: {report['total']} requests per policy")

    def row(label: str, cells: list[str]) -> None:
        table.add_row(label, *cells)

    row("accuracy", [_fmt(a["accuracy"]) for a in arms])
    row("  95% interval", ["-" if a["ci95"] is None else f"{a['ci95'][0]:.3f}-{a['ci95'][1]:.3f}" for a in arms])
    row("  graded", [f"{a['correct']}/{a['graded']}" for a in arms])
    row("reasoning share", [_fmt(a["reasoning_share"], ".1%") for a in arms])
    for kind in ("prompt", "completion", "reasoning"):
        row(f"tokens: {kind}", [f"{a['tokens'][kind]:,}" for a in arms])
    for q in ("p50", "p95", "p99"):
        row(f"latency {q} (s)", [_fmt(a["latency_s"].get(q), ".2f") for a in arms])
    row("wall (s)", [_fmt(a["wall_s"], ".1f") for a in arms])
    row("completed / failed", [f"{a['completed']} / {a['failed']}" for a in arms])
    out.print(table)


def compare(
    file: FileArg,
    policies: Annotated[
        str, typer.Option("--policies", help="comma-separated: router, always, never, share=S, tokens=N")
    ] = "router,always,never",
    as_json: JsonOpt = False,
    skip_invalid: SkipOpt = False,
    inference_workers: Annotated[int, typer.Option(help="embedded stack: inference processes")] = 1,
    time_scale: Annotated[float, typer.Option(help="embedded stack: replay latency multiplier (0 = instant)")] = 1.0,
    timeout: Annotated[float, typer.Option(help="give up on a policy's job after this many seconds")] = 3600.0,
) -> None:
    """Run FILE through the whole pipeline once per policy and print accuracy (where the requests carry
    metadata.reference), tokens, latency and wall time side by side (embedded stack if no broker is set).

    Exits 1 when some requests failed (the comparison is printed all the same)."""
    arms = parse_policies(policies)
    s = settings("WARNING", client=True)
    requests = read_requests(file, s, skip_invalid)
    opts = CompareOptions(file, arms, inference_workers, time_scale, timeout, as_json)
    report = run_loop(run_compare(s, opts, requests))
    if as_json:
        print_json(report)
    else:
        print_report(report)
    failed = {a["policy"]: a["failed"] for a in report["arms"] if a["failed"]}
    if failed:
        fail(f"some requests failed: {failed}", EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(guarded(compare))
