"""Routing-quality commands: ``train``, ``classify``, ``calibrate``, ``eval`` (registered by ``workers.cli.app``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from workers.cli.common import JsonOpt, err, fail, guarded, print_json, settings
from workers.settings import Settings

log = logging.getLogger(__name__)

PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", exists=True, dir_okay=False, help="policy YAML (default: settings)")
]


def _load(s: Settings, policy_path: Path | None) -> tuple[Any, Any]:
    from workers.router.policy import load_policy
    from workers.router.serve import load_classifier

    classifier = load_classifier(s)
    policy = load_policy(policy_path or s.router.policy_path, classifier.labels)
    return classifier, policy


def train(
    output: Annotated[Path | None, typer.Option(help="where to write adapter.npz + card (default: the assets)")] = None,
    epochs: Annotated[float, typer.Option(help="fine-tuning epochs")] = 2.0,
    seed: Annotated[int, typer.Option(help="seed (split, sampling, initialisation)")] = 13,
    resume: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="re-compose and re-measure a saved adapter instead of fitting (no torch)"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the classifier (needs the `train` extra: torch) and print the held-out report."""
    settings("INFO")
    try:
        if resume is None:
            import torch  # noqa: F401
    except ImportError:
        fail("`thinkroute train` needs torch: pip install -e '.[train]' (or --resume)")
    from workers.classifier.build import report
    from workers.training.train import train_classifier

    card = train_classifier(output, seed=seed, epochs=epochs, resume=resume)
    if as_json:
        print_json(card)
    else:
        typer.echo(report(card))


def classify(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL: question / prompt / batch lines")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL with the route added")],
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify and route every line of FILE with the router's own classifier and policy."""
    from collections import Counter

    from workers.evaluation.classify_file import classify_rows, read_lines

    s = settings("WARNING")
    rows = read_lines(file)
    classifier, pol = _load(s, policy)
    n = 0
    counts: Counter[str] = Counter()
    with output.open("w", encoding="utf-8") as f:
        for row in classify_rows(rows, classifier, pol, s.default_model):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            counts["reasoning" if row["use_reasoning"] else "direct"] += 1
            n += 1
    if as_json:
        print_json({"path": str(output), "lines": n, "reasoning": counts["reasoning"], "direct": counts["direct"]})
    else:
        done = f"wrote {n} lines to {output} (reasoning {counts['reasoning']}, direct {counts['direct']})"
        err.print(done, highlight=False, markup=False)


def calibrate(
    output: Annotated[Path, typer.Option("--output", "-o", help="write the calibrated policy YAML here")],
    share: Annotated[float | None, typer.Option(help="target share of prompts sent to reasoning")] = None,
    mean_tokens: Annotated[float | None, typer.Option(help="token budget: mean tokens per prompt")] = None,
    token_ratio: Annotated[float | None, typer.Option(help="token budget: fraction of reasoning-always tokens")] = None,
    replay: Annotated[str | None, typer.Option(help="Qwen3-format records (.jsonl/.xz, or `qwen3`)")] = None,
    split: Annotated[str, typer.Option(help="records used: calibration (default), report or all")] = "calibration",
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Derive the reasoning-score threshold for a target share or token budget; write the policy file."""
    from workers.evaluation.calibrate import calibrate as do_calibrate
    from workers.evaluation.calibrate import dump_policy
    from workers.evaluation.replay import read_records, select

    s = settings("WARNING")
    try:
        classifier, pol = _load(s, policy)
        records = select(read_records(replay), split) if replay else None
        name = f"{replay} ({split} split, {len(records)} records)" if replay and records is not None else ""
        new, info = do_calibrate(
            pol,
            classifier,
            share=share,
            mean_tokens=mean_tokens,
            token_ratio=token_ratio,
            records=records,
            data_name=name,
        )
    except ValueError as exc:
        fail(str(exc))
    output.write_text(dump_policy(new), encoding="utf-8")
    threshold = new.reasoning.threshold if new.reasoning else None
    if as_json:
        print_json({"path": str(output), "threshold": threshold, "achieved": info["achieved"]})
    else:
        err.print(f"threshold {threshold}: {json.dumps(info['achieved'])}", highlight=False, markup=False)
        err.print(f"wrote {output}", highlight=False, markup=False)


def evaluate(
    replay: Annotated[str | None, typer.Option(help="Qwen3-format records (.jsonl/.xz, or `qwen3`)")] = None,
    split: Annotated[str, typer.Option(help="records reported: report (default), calibration or all")] = "report",
    models: Annotated[str | None, typer.Option(help="SMALL,LARGE: model-routing curve on the 29-model records")] = None,
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay recorded outcomes: router vs always / never / oracle (or a small/large model-routing curve)."""
    from workers.evaluation import tables

    s = settings("WARNING")
    if (replay is None) == (models is None):
        fail("give either --replay FILE or --models SMALL,LARGE")
    try:
        classifier, pol = _load(s, policy)
        if replay is not None:
            from workers.evaluation.replay import evaluate_replay, read_records, select

            records = select(read_records(replay), split)
            result = evaluate_replay(records, classifier, pol)
            result["data"] = {"file": replay, "split": split}
            text = tables.replay_table(result)
        else:
            from workers.evaluation.models import model_curve

            assert models is not None
            small, _, large = models.partition(",")
            result = model_curve(classifier, small.strip(), large.strip())
            text = tables.curve_table(result)
    except (ValueError, KeyError, OSError) as exc:
        fail(str(exc))
    typer.echo(json.dumps(result, indent=1) if as_json else text)


def register(app: typer.Typer) -> None:
    app.command("train")(guarded(train))
    app.command("classify")(guarded(classify))
    app.command("calibrate")(guarded(calibrate))
    app.command("eval")(guarded(evaluate))
