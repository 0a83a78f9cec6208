"""``thinkroute fit`` (learn the gain model, refuse one that is not better) and ``thinkroute eval-learning``
(the simulated stream of explored and routed jobs): `workers.evaluation.fit`, `workers.evaluation.learning`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from workers.classifier.gain import FEATURES, FeatureSet
from workers.cli.common import JsonOpt, err, fail, guarded, print_json, settings
from workers.errors import EXIT_FAILED
from workers.runtime.eventloop import run_loop
from workers.settings import Settings

FeaturesOpt = Annotated[str, typer.Option(help=f"feature set: {', '.join(FEATURES)}")]


def _features(value: str) -> FeatureSet:
    if value not in FEATURES:
        fail(f"--features must be one of {', '.join(FEATURES)}, got {value!r}")
    return cast(FeatureSet, value)


def _classifier(s: Settings, embeddings: bool, named: str | None = None) -> Any:
    """The classifier a policy names (``named``), else the configured one."""
    from workers.classifier.cache import ensure_artifact
    from workers.classifier.model import Classifier

    artifact = Path(named) if named else s.router.artifact_dir or ensure_artifact(s.cache_dir, progress=True)
    return Classifier.load(
        artifact, providers=s.router.providers, intra_op_threads=s.router.intra_op_threads, embeddings=embeddings
    )


def _ci(pair: list[float]) -> str:
    return f"[{pair[0]:.4f}, {pair[1]:.4f}]"


def fit_text(report: dict[str, Any]) -> str:
    h = report["held_out"]
    lines = [
        f"fit: {report['n']} records ({report['skipped']} without both arms), {report['cheap']} -> "
        f"{report['expensive']}, features {report['features']}, {report['folds']} folds by prompt hash "
        f"(seed {report['seed']}); current policy {report['current_policy']}",
        "held-out (each fold predicted by a model fitted on the others), mean accuracy over shares 10..90%:",
    ]
    for k in ("new", "current", "random"):
        lines.append(f"  {k:<8} {h['mean_accuracy'][k]:.4f}  95% {_ci(h['mean_accuracy_ci95'][k])}")
    lines.append(
        f"  new - current {h['diff_new_minus_current']:+.4f}  95% {_ci(h['diff_ci95'])}  "
        f"one-sided 95% lower bound {h['diff_lower_95']:+.4f}"
    )
    for k in ("new", "current"):
        auc, ci = h["auc_gain"][k], _ci(h["auc_gain_ci95"][k])
        lines.append(f"  AUC (expensive right, cheap wrong) {k:<8} {auc:.4f}  95% {ci}")
    lines.append(f"test: {report['test']}: {'passed' if report['accepted'] else 'failed'}")
    return "\n".join(lines)


def _job_records(s: Settings, jobs: list[str]) -> list[Any]:
    """The exploration samples of ``jobs`` as outcome records (``thinkroute records export``'s reading)."""
    from workers.cli import console
    from workers.cli.export import job_outcomes

    async def go() -> list[Any]:
        out: list[Any] = []
        async with console.clients(s, kafka=False) as (_, store):
            for job in jobs:
                records, explored, _ = await job_outcomes(store, job)
                if not explored:
                    fail(f"job {job} has no exploration sample (submit it with --explore 0.05)")
                out += records
        return out

    return run_loop(go())


def fit(
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the new policy YAML")],
    records: Annotated[
        list[Path] | None,
        typer.Option("--records", exists=True, dir_okay=False, help="outcome-records JSONL (repeatable)"),
    ] = None,
    from_job: Annotated[
        list[str] | None,
        typer.Option("--from-job", help="a job's exploration sample, read from Redis (repeatable)"),
    ] = None,
    cheap: Annotated[str, typer.Option(help="the cheap arm")] = "direct",
    expensive: Annotated[str, typer.Option(help="the expensive arm")] = "reasoning",
    policy: Annotated[
        Path | None, typer.Option("--policy", exists=True, dir_okay=False, help="current policy (default: settings)")
    ] = None,
    features: FeaturesOpt = "embedding-v1",
    folds: Annotated[int, typer.Option(min=2, max=20, help="cross-validation folds")] = 5,
    seed: Annotated[int, typer.Option(help="seed of the folds and the bootstrap")] = 13,
    as_json: JsonOpt = False,
) -> None:
    """Fit the gain model; write the new policy only if it beats the current one on held-out folds.

    Test: one-sided paired bootstrap of the held-out difference in mean accuracy (new - current) over
    shares 10..90%; written (atomically) only when its 95% lower bound is above 0, else exit 1.
    """
    from workers.evaluation.fit import fit as run_fit
    from workers.evaluation.fit import read_records, write_policy_atomic
    from workers.router.policy import check_policy, load_policy

    s = settings("WARNING")
    feats = _features(features)
    if not output.parent.is_dir():
        fail(f"cannot write {output}: {output.parent} is not a directory")
    if not records and not from_job:
        fail("give --records FILE and/or --from-job JOB")
    recs = read_records(records or [])
    if from_job:
        recs += _job_records(s, from_job)
    current = load_policy(policy or s.router.policy_path)
    with _classifier(s, feats == "embedding-v1", current.classifier) as clf:  # the policy's own classifier first
        check_policy(current, clf.labels, str(policy or s.router.policy_path or current.version))
        sources = [str(p) for p in records or []] + [f"job:{j}" for j in from_job or []]
        result = run_fit(recs, clf, current, cheap, expensive, feats, folds, seed, sources)
    if result.accepted and result.policy is not None:
        write_policy_atomic(result.policy, output)
        result.report["written"] = str(output)
    if as_json:
        print_json(result.report)
    else:
        typer.echo(fit_text(result.report))
    if not result.accepted:
        err.print(f"not written: the new model is not better than {result.report['current_policy']}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    err.print(f"wrote {output} (policy {result.report['version']})", highlight=False)


def eval_learning(
    records: Annotated[str, typer.Option("--records", help="'models' (29-model CSV) or 'qwen3' (205 records)")],
    cheap: Annotated[str, typer.Option(help="cheap arm (a model of the 29, or direct)")],
    expensive: Annotated[str, typer.Option(help="expensive arm (a model of the 29, or reasoning)")],
    explore: Annotated[str, typer.Option(help="comma-separated exploration rates")] = "0.05,0.10",
    jobs: Annotated[int, typer.Option(min=2, help="jobs the records are cut into")] = 8,
    share: Annotated[float, typer.Option(min=0.0, max=1.0, help="share routed to the expensive arm")] = 0.3,
    seed: Annotated[int, typer.Option(help="seed of the job cut, the exploration samples, the bootstrap")] = 13,
    features: FeaturesOpt = "embedding-v1",
    as_json: JsonOpt = False,
) -> None:
    """Simulate jobs explored at each rate, fitting after each job and routing the next with the fit."""
    from workers.evaluation.learning import learning_table, load_arrays, simulate

    s = settings("WARNING")
    feats = _features(features)
    try:
        rates = [float(x) for x in explore.split(",") if x.strip()]
    except ValueError:
        fail(f"--explore must be comma-separated numbers, got {explore!r}")
    if not rates or any(not 0 < r < 1 for r in rates):
        fail(f"--explore rates must be in (0, 1), got {explore!r}")
    data = load_arrays(records, cheap, expensive)
    with _classifier(s, feats == "embedding-v1") as clf:
        result = simulate(data, clf, rates, jobs, share, seed, feats)
    if as_json:
        print_json(result)
    else:
        typer.echo(learning_table(result))


def register(app: typer.Typer) -> None:
    app.command("fit")(guarded(fit))
    app.command("eval-learning")(guarded(eval_learning))
