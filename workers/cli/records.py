"""``thinkroute records``: outcome-record files (`schemas.outcomes`); ``convert`` writes them from other formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workers.cli import export
from workers.cli.common import JsonOpt, err, guarded, print_json, settings

records_app = typer.Typer(no_args_is_help=True, help="Outcome records: the one format eval, calibrate and fit read.")


def convert(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="input file(s); `qwen3` / `models`: the shipped file; several only with --from exploration"
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="outcome records JSONL (.jsonl or .jsonl.xz)")],
    kind: Annotated[str, typer.Option("--from", help="qwen3 | models | routellm | exploration")],
    models: Annotated[str | None, typer.Option(help="--from models: keep only these arms (A,B,...)")] = None,
    prompt_column: Annotated[str, typer.Option(help="--from routellm: the prompt column")] = "prompt",
    as_json: JsonOpt = False,
) -> None:
    """Convert INPUT to outcome records (see workers/evaluation/convert.py for each format's mapping)."""
    from workers.evaluation.convert import convert as do_convert
    from workers.evaluation.outcomes import write_outcomes

    settings("WARNING")
    keep = [m.strip() for m in models.split(",") if m.strip()] if models else None
    done = do_convert(kind, inputs, models=keep, prompt_column=prompt_column)
    n = write_outcomes(output, done.records)
    stats = {"path": str(output), "from": kind, **done.stats, "records": n}
    if as_json:
        print_json(stats)
    else:
        arms = ", ".join(stats.get("arms", []))
        err.print(f"wrote {n} records to {output} (arms: {arms})", highlight=False, markup=False)
        for key, value in stats.items():
            if key.startswith(("skipped", "duplicates", "tokens")) and value:
                err.print(f"  {key}: {value}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    records_app.command("convert")(guarded(convert))
    export.register(records_app)  # records export
    app.add_typer(records_app, name="records")
