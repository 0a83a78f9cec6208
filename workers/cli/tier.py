"""``thinkroute eval-tier``: the first tier against the encoder alone on held-out questions
(``workers.evaluation.first_tier``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from workers.cli.common import JsonOpt, guarded, out, print_json, settings


def eval_tier(
    artifact: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="artefact dir (default: the router's, built on first use)"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=20, help="only the first N held-out and GSM8K questions (a quick look)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, the category table's decision, the reasoning score and prompts/s, with and without the lexical
    first tier, on the classifier's held-out MMLU-Pro questions and unseen GSM8K ones (paired 95% intervals)."""
    from workers.classifier.build import DEFAULT_SEED
    from workers.evaluation.first_tier import compare
    from workers.router.loading import default_artifact

    r = compare(artifact or default_artifact(settings(), progress=True), DEFAULT_SEED, limit)
    if as_json:
        print_json(r)
        return
    enc, tier, d = r["encoder"], r["first_tier"], r["diff"]

    def ci(key: str) -> str:
        return f" ({d[key][0]:+.4f}, 95% [{d[key][1]:+.4f}, {d[key][2]:+.4f}])"

    rows: list[tuple[str, Any, Any]] = [
        (f"held-out accuracy ({r['n']})", enc["accuracy"], f"{tier['accuracy']}{ci('accuracy')}"),
        ("macro-F1", enc["macro_f1"], tier["macro_f1"]),
        ("accuracy, MCQ-formatted", enc["accuracy_mcq"], tier["accuracy_mcq"]),
        ("table decision agreement", enc["table_agreement"], f"{tier['table_agreement']}{ci('table_agreement')}"),
        *((f"source {s} ({n})", enc["by_source"][s], tier["by_source"][s]) for s, n in r["by_source_n"].items()),
        (f"GSM8K as math ({r['n_gsm8k']})", enc["gsm8k_as_math"], tier["gsm8k_as_math"]),
        ("score Pearson", enc["score_pearson"], f"{tier['score_pearson']}{ci('score_pearson')}"),
        (f"reasoning share (>= {r['policy_threshold']:g})", enc["reasoning_share"], tier["reasoning_share"]),
        ("tier share (MCQ, GSM8K)", "", f"{tier['tier_share']} ({tier['tier_share_mcq']}, {tier['tier_share_gsm8k']})"),
        ("prompts/s (alternating)", enc["per_s"], f"{tier['per_s']} = {r['speed_ratio']}x"),
    ]
    table = Table("figure", "encoder only", "first tier + encoder")
    for name, a, b in rows:
        table.add_row(name, str(a), str(b))
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("eval-tier")(guarded(eval_tier))
