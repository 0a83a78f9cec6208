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

RecordsOpt = Annotated[str | None, typer.Option("--records", help="outcome records (.jsonl/.jsonl.xz)")]
CheapOpt = Annotated[str | None, typer.Option(help="--records: the cheap arm (e.g. direct, or a model)")]
ExpensiveOpt = Annotated[str | None, typer.Option(help="--records: the expensive arm (e.g. reasoning)")]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", exists=True, dir_okay=False, help="policy YAML (default: settings)")
]


def _load(s: Settings, policy_path: Path | None) -> tuple[Any, Any]:
    """The classifier the policy names (its ``classifier`` key), else the router's configured one (the shipped
    one's first build shows its progress, as ``eval-tier`` and ``learn`` do)."""
    from workers.router.loading import default_artifact, load_routing

    return load_routing(s, policy_path or s.router.policy_path, default=lambda: default_artifact(s, progress=True))


def train(
    output: Annotated[
        Path | None,
        typer.Option(
            help="where to write adapter.npz + card (default: the assets); with --data: the artefact dir "
            "(default: <cache_dir>/classifier/custom-<version>)"
        ),
    ] = None,
    epochs: Annotated[float, typer.Option(help="fine-tuning epochs")] = 2.0,
    seed: Annotated[int, typer.Option(help="seed (split, sampling, initialisation)")] = 13,
    resume: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="re-compose and re-measure a saved adapter instead of fitting (no torch)"
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="JSONL of labelled prompts: train your own categories (no torch)"
        ),
    ] = None,
    label_field: Annotated[
        str | None, typer.Option(help="--data: the label's field (a dotted path like meta.topic allowed)")
    ] = None,
    text_field: Annotated[
        str | None, typer.Option(help="--data: the text's field (default: prompt, question, text or a Batch body)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the classifier (needs the `train` extra: torch) and print the held-out report.

    With --data FILE --label-field FIELD: a classifier for your own categories on the shipped encoder (no
    torch), written with its held-out report and a policy skeleton (policy.yaml) with one rule per category."""
    if data is not None or label_field is not None or text_field is not None:
        _train_custom(data, label_field, text_field, output, seed, as_json)
        return
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


def _train_custom(
    data: Path | None, label_field: str | None, text_field: str | None, output: Path | None, seed: int, as_json: bool
) -> None:
    from workers.classifier.build import report
    from workers.training.custom import train_custom

    if data is None or label_field is None:
        fail("train your own categories with both --data FILE.jsonl and --label-field FIELD")
    s = settings("INFO")
    card = train_custom(data, label_field, s.cache_dir, text_field=text_field, output=output, seed=seed)
    if as_json:
        print_json(card)
    else:
        typer.echo(report(card))
        err.print(f"wrote {card['path']} (policy skeleton: {card['path']}/policy.yaml)", highlight=False, markup=False)


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
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="write the calibrated policy YAML here (required but with --records)"),
    ] = None,
    share: Annotated[float | None, typer.Option(help="target share of prompts sent to reasoning")] = None,
    mean_tokens: Annotated[float | None, typer.Option(help="token budget: mean tokens per prompt")] = None,
    token_ratio: Annotated[float | None, typer.Option(help="token budget: fraction of reasoning-always tokens")] = None,
    replay: Annotated[str | None, typer.Option(help="Qwen3-format records (.jsonl/.xz, or `qwen3`)")] = None,
    split: Annotated[
        str | None,
        typer.Option(help="--replay: calibration (default), report or all; --records: heldout, train or all (default)"),
    ] = None,
    records: RecordsOpt = None,
    cheap: CheapOpt = None,
    expensive: ExpensiveOpt = None,
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Derive the reasoning-score threshold for a target share or token budget; write the policy file.

    With --records FILE --cheap ARM --expensive ARM --share S: the threshold of the policy's priority that
    sends the top S of those records to the expensive arm, and what that achieves on them."""
    from workers.evaluation.calibrate import calibrate as do_calibrate
    from workers.evaluation.calibrate import dump_policy
    from workers.evaluation.replay import read_records, select

    s = settings("WARNING")
    if records is not None:
        _calibrate_records(s, records, cheap, expensive, share, split or "all", policy, output, as_json)
        return
    if output is None:
        fail("--output is required (except with --records)")
    split = split or "calibration"
    try:
        classifier, pol = _load(s, policy)
        recs = select(read_records(replay), split) if replay else None
        name = f"{replay} ({split} split, {len(recs)} records)" if replay and recs is not None else ""
        new, info = do_calibrate(
            pol,
            classifier,
            share=share,
            mean_tokens=mean_tokens,
            token_ratio=token_ratio,
            records=recs,
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
    split: Annotated[
        str | None,
        typer.Option(
            help="--replay: report (default), calibration or all; --records: heldout, train or all "
            "(default: heldout for the 29-model records, else all)"
        ),
    ] = None,
    models: Annotated[str | None, typer.Option(help="SMALL,LARGE: model-routing curve on the 29-model records")] = None,
    records: RecordsOpt = None,
    cheap: CheapOpt = None,
    expensive: ExpensiveOpt = None,
    resamples: Annotated[int, typer.Option(min=0, help="--records: bootstrap resamples (paired)")] = 1000,
    seed: Annotated[int, typer.Option(help="--records: bootstrap seed")] = 0,
    cost: Annotated[
        str,
        typer.Option(help="--records: tokens, share (to the expensive arm), or auto: tokens when both arms have them"),
    ] = "auto",
    policy: PolicyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay recorded outcomes: router vs always / never / oracle (or a small/large model-routing curve).

    With --records FILE --cheap ARM --expensive ARM: the policy's priority on outcome records, the
    accuracy/cost curve, accuracy at 10..90%, the cost to reach 95% of the expensive arm, random and oracle
    at the same cost, with paired bootstrap 95% intervals."""
    from workers.evaluation import tables

    s = settings("WARNING")
    if sum(x is not None for x in (replay, models, records)) != 1:
        fail("give either --replay FILE or --models SMALL,LARGE or --records FILE --cheap ARM --expensive ARM")
    if records is not None:
        _eval_records(s, records, cheap, expensive, split, resamples, seed, cost, policy, as_json)
        return
    split = split or "report"
    try:
        classifier, pol = _load(s, policy)
        if replay is not None:
            from workers.evaluation.replay import evaluate_replay, read_records, select

            replayed = select(read_records(replay), split)
            result = evaluate_replay(replayed, classifier, pol)
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


def _records_pair(cheap: str | None, expensive: str | None) -> tuple[str, str]:
    if cheap is None or expensive is None:
        fail("--records needs --cheap ARM and --expensive ARM")
    return cheap, expensive


def _eval_records(
    s: Settings,
    path: str,
    cheap: str | None,
    expensive: str | None,
    split: str | None,
    resamples: int,
    seed: int,
    cost: str,
    policy: Path | None,
    as_json: bool,
) -> None:
    from workers.evaluation import tables
    from workers.evaluation.outcomes import read_outcomes
    from workers.evaluation.report import default_split, evaluate_records

    lo, hi = _records_pair(cheap, expensive)
    recs = read_outcomes(path)
    chosen = split or default_split(recs)
    classifier, pol = _load(s, policy)
    result = evaluate_records(recs, lo, hi, classifier, pol, split=chosen, resamples=resamples, seed=seed, cost=cost)
    result["file"] = path
    if as_json:
        print_json(result)
    else:
        typer.echo(tables.records_table(result))


def _calibrate_records(
    s: Settings,
    path: str,
    cheap: str | None,
    expensive: str | None,
    share: float | None,
    split: str,
    policy: Path | None,
    output: Path | None,
    as_json: bool,
) -> None:
    from workers.evaluation.calibrate import calibrate_records, dump_policy
    from workers.evaluation.outcomes import read_outcomes

    lo, hi = _records_pair(cheap, expensive)
    if share is None:
        fail("--records calibrates a share: give --share S")
    classifier, pol = _load(s, policy)
    if output is not None and pol.gain is not None:
        fail("the policy ranks by its gain model: a gain threshold is a job's (--reasoning-share), not a policy field")
    new, info = calibrate_records(read_outcomes(path), lo, hi, classifier, pol, share=share, split=split, name=path)
    if output is not None:
        output.write_text(dump_policy(new), encoding="utf-8")
    if as_json:
        print_json({"path": None if output is None else str(output), **info})
        return
    a = info["achieved"]
    err.print(
        f"threshold {info['threshold']} ({info['priority']}) on {info['n']} records ({split} split): expensive share "
        f"{a['expensive_share']:.1%}, accuracy {a['accuracy']:.3f}",
        highlight=False,
        markup=False,
    )
    if output is not None:
        err.print(f"wrote {output}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("train")(guarded(train))
    app.command("classify")(guarded(classify))
    app.command("calibrate")(guarded(calibrate))
    app.command("eval")(guarded(evaluate))
