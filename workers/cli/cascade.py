"""``thinkroute eval-cascade``: routing vs cascading on held-out replay records (`workers.evaluation.cascade`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from workers.cli.common import JsonOpt, fail, guarded, out, print_json
from workers.evaluation.cascade import DEFAULT_CHEAP, DEFAULT_EXPENSIVE, THRESHOLDS, run

DEFAULT_THRESHOLDS = ",".join(f"{x:g}" for x in THRESHOLDS)
NO_RECORDS = (
    "eval-cascade cannot read outcome records: a cascade escalates when the cheap answer's confidence "
    "(a letter log-probability) is low, and outcome records carry only correctness and tokens per arm; "
    "it runs on the shipped 29-model and Qwen3 records, where the confidence is modelled"
)


def eval_cascade(
    cheap: Annotated[str, typer.Option(help="cheap model of the 29-model records")] = DEFAULT_CHEAP,
    expensive: Annotated[str, typer.Option(help="expensive model of the 29-model records")] = DEFAULT_EXPENSIVE,
    weight: Annotated[
        float | None, typer.Option(help="cost of an expensive token in cheap tokens; default: parameter ratio")
    ] = None,
    thresholds: Annotated[str, typer.Option(help="comma-separated confidence thresholds")] = DEFAULT_THRESHOLDS,
    records: Annotated[
        str | None, typer.Option("--records", help="outcome records: refused (they carry no confidence; see help)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy vs tokens, cost and modelled latency: route-only, cascade, route+cascade, always, oracle.

    Not on outcome records (--records): a cascade escalates on the cheap answer's confidence (here modelled
    from the other recorded models' answers), which an outcome record does not carry."""
    if records is not None:
        fail(NO_RECORDS)
    from workers.replay.records import load_default

    ts = [float(x) for x in thresholds.split(",") if x.strip()]
    points = run(load_default(), cheap, expensive, ts, weight)
    if as_json:
        print_json([p.row() for p in points])  # one JSON value: a list of rows
        return
    table = Table("dataset", "strategy", "param", "accuracy", "tokens", "cost", "latency s", "expensive share")
    for p in points:
        r = p.row()
        table.add_row(
            *(str(r[k]) for k in ("dataset", "strategy", "param", "accuracy", "mean_tokens", "cost")),
            str(r["latency_s"]),
            str(r["expensive_share"]),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval-cascade")(guarded(eval_cascade))
