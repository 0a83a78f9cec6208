"""The job commands' terminal output (spinner, progress bar, summary) and their broker and Redis clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers.cli.common import edge, err, out, print_json
from workers.errors import Unreachable
from workers.settings import Settings
from workers.store.jobstore import Store

# the CLI's bound on reaching the broker (bootstrap: connect and first metadata answer); Redis's are those of
# workers.store.jobstore.redis_client: 5 s to connect, 10 s for an answer
BROKER_CONNECT_TIMEOUT_S = 10.0


@contextmanager
def status(message: str, quiet: bool = False) -> Iterator[None]:
    if quiet:
        yield
        return
    with err.status(message):
        yield


@contextmanager
def progress_bar(total: int, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    if quiet:
        yield lambda done, total: None
        return
    columns = (TextColumn("answering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("job", total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)


@asynccontextmanager
async def clients(s: Settings, kafka: bool = True) -> AsyncIterator[tuple[AIOKafkaProducer | None, Store]]:
    """One producer (if asked) and one Redis pool for a CLI command, closed on the way out.

    The CLI's edge: a connection error of either (at start or in the body) is re-raised as Unreachable with
    the configured address.
    """
    from workers.kafka.clients import kafka_config, make_producer
    from workers.store.jobstore import redis_client

    redis = redis_client(s)
    producer = make_producer(kafka_config(s), linger_ms=20) if kafka else None
    try:
        with edge(s):
            if producer is not None:
                await _start(producer, s)
            yield producer, Store(redis)
    finally:
        if producer is not None:
            await producer.stop()
        await redis.aclose()


async def _start(producer: AIOKafkaProducer, s: Settings) -> None:
    """Connect within ``BROKER_CONNECT_TIMEOUT_S``: a refused port fails at once, but a listener that never
    answers would hold aiokafka's bootstrap for its request timeout (30 s) and then its retries."""
    from workers.kafka.clients import kafka_config, start_client

    try:
        async with asyncio.timeout(BROKER_CONNECT_TIMEOUT_S):
            await start_client(producer, kafka_config(s))
    except TimeoutError:
        raise Unreachable(
            "broker", s.kafka_bootstrap or "?", f"no answer within {BROKER_CONNECT_TIMEOUT_S:g}s"
        ) from None


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    stopped = f"{summary['stopped']} stopped, " if summary.get("stopped") or summary.get("stop") else ""
    out.print(
        f"[bold]job {summary['job_id']}[/bold] ({summary.get('source', '')}): "
        f"{summary['completed']} completed, {summary['failed']} failed, {stopped}{summary['pending']} pending "
        f"of {summary['total']} in {summary['wall_s']:.1f}s" + (f" ({summary['state']})" if "state" in summary else "")
    )
    if summary.get("state") == "failed":
        out.print(f"failed: {summary.get('failed_reason') or 'no reason recorded'}", style="red", markup=False)
    print_stop(summary)
    table = Table("route", "requests", "done", "failed", "prompt", "completion", "reasoning", title="tokens by route")
    for route, t in summary["tokens_by_route"].items():
        table.add_row(
            route,
            str(summary["routes"][route]),
            str(t["completed"]),
            str(t["failed"]),
            str(t["prompt"]),
            str(t["completion"]),
            str(t["reasoning"]),
        )
    esc: dict[str, int] = summary.get("escalation_tokens") or {}
    if summary.get("escalations"):
        table.add_row(
            "escalated",
            str(summary["escalations"]),
            "",
            "",
            str(esc["prompt"]),
            str(esc["completion"]),
            str(esc["reasoning"]),
            style="italic",
        )
    tok = summary["tokens"]
    table.add_row(
        "all",
        str(summary["total"]),
        str(summary["completed"]),
        str(summary["failed"]),
        str(tok["prompt"]),
        str(tok["completion"]),
        str(tok["reasoning"]),
        style="bold",
    )
    exploration: dict[str, Any] = summary.get("exploration") or {}
    for route, t in (exploration.get("routes") or {}).items():
        if t["requests"]:  # the other arm's answers of the exploration sample: not in 'all'
            row = [str(t[k]) for k in ("requests", "completed", "failed", "prompt", "completion", "reasoning")]
            table.add_row(f"explore:{route}", *row, style="italic")
    out.print(table)
    if exploration.get("total"):
        out.print(
            f"exploration: {exploration['total']} prompts answered by both arms, {exploration['pending']} shadow "
            "answers pending (their tokens are the explore rows, not in 'all')"
        )
    if summary.get("escalations"):
        out.print(
            f"escalations: {summary['escalations']} direct answers below the confidence threshold were re-run "
            f"(their first attempts cost {esc['prompt'] + esc['completion']} tokens, included in 'all')"
        )
    if summary.get("fallback"):
        out.print(f"fallback: {summary['fallback']} results came from the fallback endpoint (the primary failed)")
    if summary.get("plan"):
        print_plan(summary["plan"], summary["total"])
    if summary.get("llm"):
        out.print(describe_llm(summary["llm"]), markup=False, highlight=False)
    lat = summary["latency_s"]
    out.print(f"latency (submit -> stored): p50 {lat['p50']:.2f}s  p95 {lat['p95']:.2f}s  p99 {lat['p99']:.2f}s")
    print_savings(summary)
    if "output" in summary:
        out.print(f"results: {summary['output']['lines']} lines in {summary['output']['path']}")


def describe_llm(llm: dict[str, Any]) -> str:
    """One line: which LLM answered (the embedded stack's replay server, or the user's) and where."""
    routes: dict[str, str | None] = llm.get("routes") or {}
    urls = set(routes.values())
    where = str(urls.pop()) if len(urls) == 1 else ", ".join(f"{r} {u}" for r, u in routes.items())
    extra = f" (+{len(llm['model_urls'])} per-model URLs)" if llm.get("model_urls") else ""
    return f"LLM: {llm['backend']} at {where}{extra}"


STOP_WORDS = {"cancelled": "cancel", "expired": "end of its completion window"}


def print_stop(summary: dict[str, Any]) -> None:
    """A cancelled or expired job (or one stopping): what was not run, what is still awaited."""
    stop = summary.get("stop")
    if stop is None:
        return
    line = f"{stop}: {summary.get('stopped', 0)} requests not run (stopped by the {STOP_WORDS.get(stop, stop)})"
    if summary.get("state") == "stopping":
        line += f"; waiting for {summary.get('in_flight', 0)} answers in flight"
    out.print(line, style="yellow", highlight=False, markup=False)


def _ci(pair: list[float] | None, fmt: str) -> str:
    return f"[{fmt.format(pair[0])}, {fmt.format(pair[1])}]" if pair else ""


def _n(x: float | None) -> str:
    return "?" if x is None else f"{x:,.0f}"


def print_savings(summary: dict[str, Any]) -> None:
    """The savings report (``workers.submit.savings``): router / always / never, accuracy (or agreement) with
    its 95% interval, completion tokens (always and never estimated) and what routing saved; per category."""
    if "savings" not in summary:
        return
    s = summary["savings"]
    if s is None:
        out.print(f"savings: {summary.get('savings_hint') or 'no exploration sample'}", style="dim", markup=False)
        return
    ex, ci, metric = s["explored"], s["ci95"], s["metric"]
    title = f"routing value: {ex['pairs']} explored pairs ({ex['graded']} graded), {metric}, 95% intervals"
    table = Table("arm", metric, "95% interval", "completion tokens", "saved vs always", title=title)
    saved = "?" if s["tokens_saved"] is None else f"{_n(s['tokens_saved'])} ({s['tokens_saved_pct']:.1f}%)"
    saved_ci = _ci(ci.get("tokens_saved_pct"), "{:.1f}%")
    for arm in ("router", "always", "never"):
        tokens = _n(s["tokens"][arm]) + ("" if arm == "router" else " (est.)")
        table.add_row(
            arm,
            f"{s['est_accuracy'][arm]:.3f}",
            _ci(ci.get(arm), "{:.3f}"),
            tokens,
            f"{saved} {saved_ci}" if arm == "router" else "",
        )
    out.print(table)
    if s.get("note"):
        out.print(s["note"], style="dim", markup=False)
    per = s.get("per_category") or {}
    if len(per) > 1:
        cats = Table("category", "pairs", "router", "always", "never", "saved (sample)", title="per category")
        for name, c in per.items():
            acc = c["est_accuracy"]
            pct = "?" if c["tokens_saved_pct"] is None else f"{c['tokens_saved_pct']:.1f}%"
            cats.add_row(
                name, str(c["pairs"]), *(f"{acc[a]:.2f}" for a in ("router", "always", "never")), pct, style=None
            )
        out.print(cats)


def print_plan(plan: dict[str, Any], total: int) -> None:
    """The job's plan against what was routed: one line for the budget, one for the exploration sample."""
    planned, realised = plan["planned"], plan["realised"]
    if plan.get("budget"):
        threshold = "" if plan.get("threshold") is None else f", threshold {plan['threshold']:.6g}"
        expected = planned.get("expected_reasoning_tokens")
        tokens = "" if expected is None else f", expected reasoning tokens {expected:.0f}"
        out.print(
            f"plan {plan['budget']} (policy {plan.get('policy_version')}{threshold}): "
            f"{planned['reasoning']} of {total} planned to reasoning ({planned['share']:.1%}){tokens}; "
            f"routed {realised['reasoning']} ({realised['share']:.1%}), "
            f"{realised['reasoning_tokens']} reasoning tokens",
            highlight=False,
            markup=False,
        )
    if plan.get("explore"):
        out.print(
            f"exploration: {plan['explore_total']} of {total} prompts ({plan['explore']:.1%} asked, "
            f"seed {plan['explore_seed']}) answered by both arms",
            highlight=False,
            markup=False,
        )
