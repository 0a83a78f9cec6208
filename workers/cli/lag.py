"""Operations commands: ``thinkroute lag``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from workers.cli.common import edge, fail, guarded, out, settings
from workers.settings import Settings


def lag(
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group", "-g", help="GROUP=TOPIC[,TOPIC...] (repeatable); default: the router and inference groups"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (one object per line with --watch)")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="measure again every --interval seconds")] = False,
    interval: Annotated[float, typer.Option(help="seconds between measurements (rate window sample)")] = 5.0,
    sample: Annotated[
        float,
        typer.Option(help="without --watch: seconds between the two measurements the rate is taken from; 0 = one"),
    ] = 2.0,
    window: Annotated[
        float, typer.Option(help="--watch: the consumption rate is averaged over this many seconds")
    ] = 60.0,
    timeout: Annotated[float, typer.Option(help="give up on one measurement after this many seconds")] = 15.0,
) -> None:
    """Committed offset, end offset and lag per group, topic and partition; total lag and time to drain."""
    s = settings("WARNING", client=True)
    if s.embedded:
        fail("THINKROUTE_KAFKA_BOOTSTRAP is not set")
    try:
        groups = parse_groups(group, s)
    except ValueError as exc:
        fail(str(exc))
    try:
        with edge(s):
            asyncio.run(_lag(s, groups, as_json, watch, interval, sample, window, timeout))
    except KeyboardInterrupt:
        pass  # --watch ends with Ctrl-C: that is its normal end


def parse_groups(specs: list[str] | None, s: Settings) -> dict[str, list[str]]:
    if not specs:
        t = s.topics
        return {s.router.group: [t.prompts], s.inference.group: [t.reasoning, t.direct]}
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, topics = spec.partition("=")
        names = [x.strip() for x in topics.split(",") if x.strip()]
        if not sep or not name or not names:
            raise ValueError(f"--group {spec!r}: expected GROUP=TOPIC[,TOPIC...]")
        out.setdefault(name, []).extend(names)
    return out


async def _lag(
    s: Settings,
    groups: dict[str, list[str]],
    as_json: bool,
    watch: bool,
    interval: float,
    sample: float,
    window: float,
    timeout: float,
) -> None:
    from workers.kafka.clients import kafka_config
    from workers.kafka.lag import DrainTracker, measure

    kc = kafka_config(s)
    trackers = {g: DrainTracker(window_s=window if watch else max(sample, 0.0) + 1.0) for g in groups}
    rounds = 0
    while True:
        started = time.monotonic()
        snaps = await measure(kc, groups, timeout)
        drains = {g.group: trackers[g.group].add(g) for g in snaps}
        rounds += 1
        if not watch and rounds == 1 and sample > 0:
            await asyncio.sleep(sample)  # a second measurement: the rate needs two
            continue
        report = [to_dict(g, drains[g.group]) for g in snaps]
        if as_json:
            typer.echo(json.dumps(report if not watch else {"at": snaps[0].taken_at, "groups": report}))
        else:
            _print(report)
        if not watch:
            return
        await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))


def to_dict(g: Any, d: Any) -> dict[str, Any]:
    return {
        "group": g.group,
        "total_lag": g.total,
        "lag_by_topic": g.by_topic(),
        "rate_per_s": None if d.rate_per_s is None else round(d.rate_per_s, 3),
        "drain_s": None if d.eta_s is None else round(d.eta_s, 1),
        "partitions": [
            {"topic": p.topic, "partition": p.partition, "committed": p.committed, "end": p.end, "lag": p.lag}
            for p in g.partitions
        ],
    }


def _print(report: list[dict[str, Any]]) -> None:
    table = Table(show_edge=False)
    for col in ("group", "topic", "partition", "committed", "end", "lag"):
        table.add_column(col, justify="left" if col in ("group", "topic") else "right", no_wrap=True)
    for g in report:
        for i, p in enumerate(g["partitions"]):
            c = "-" if p["committed"] is None else str(p["committed"])
            last = i == len(g["partitions"]) - 1
            table.add_row(
                g["group"], p["topic"], str(p["partition"]), c, str(p["end"]), str(p["lag"]), end_section=last
            )
    out.print(table)
    for g in report:
        rate = "?" if g["rate_per_s"] is None else f"{g['rate_per_s']:.1f}/s"
        out.print(
            f"[bold]{g['group']}[/bold]: total lag {g['total_lag']}, rate {rate}, drain {_eta(g)}", highlight=False
        )


def _eta(g: dict[str, Any]) -> str:
    if g["total_lag"] == 0:
        return "drained"
    if g["drain_s"] is None:
        return "unknown (one measurement)" if g["rate_per_s"] is None else "stalled (no progress)"
    secs = int(g["drain_s"])
    return f"~{secs // 3600}h{secs % 3600 // 60:02d}m{secs % 60:02d}s"


def register(app: typer.Typer) -> None:
    app.command("lag")(guarded(lag))
