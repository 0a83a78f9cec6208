"""The planning pass of ``thinkroute submit|run``: the budget and exploration flags, and the plan made from
them with the router's own classifier and policy (``workers.router.plan``) before anything is published."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.batch import ChatBody
from schemas.messages import PromptPlan
from schemas.records import JobPlan
from workers.cli.common import err
from workers.errors import InvalidInput
from workers.router.plan import Budget, PlanArgs
from workers.settings import Settings

log = logging.getLogger(__name__)

ShareOpt = Annotated[
    float | None,
    typer.Option(
        "--reasoning-share",
        help="job budget: exactly round(S x N) prompts (highest predicted gain) go to reasoning; S in [0, 1]",
    ),
]
TokensOpt = Annotated[
    float | None,
    typer.Option(
        "--reasoning-tokens",
        help="job budget: the prompts of highest predicted gain per expected token, up to N expected reasoning "
        "tokens in all",
    ),
]
ExploreOpt = Annotated[
    float, typer.Option("--explore", help="share of the job answered by both arms (an exact seeded sample)")
]
SeedOpt = Annotated[int, typer.Option("--explore-seed", help="the exploration sample's seed")]
PROGRESS_FROM = 500  # prompts: a progress bar while classifying jobs at least this large

Plan = tuple[JobPlan | None, list[PromptPlan | None]]


def plan_args(share: float | None, tokens: float | None, explore: float = 0.0, explore_seed: int = 0) -> PlanArgs:
    """The flags checked (InvalidInput, exit 2): one budget at most, values in range."""
    if share is not None and tokens is not None:
        raise InvalidInput("--reasoning-share and --reasoning-tokens exclude each other: give one budget")
    if not 0.0 <= explore <= 1.0:
        raise InvalidInput(f"--explore must be in [0, 1], got {explore:g}")
    budget = None
    if share is not None:
        budget = Budget("share", share)
    elif tokens is not None:
        budget = Budget("tokens", tokens)
    return PlanArgs(budget, explore, explore_seed)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    if quiet or total < PROGRESS_FROM:
        yield None
        return
    columns = (TextColumn("planning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("plan", total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def make_plan(
    s: Settings, custom_ids: Sequence[str], bodies: Callable[[], Iterable[ChatBody]], args: PlanArgs, quiet: bool
) -> Plan | None:
    """The job's plan (None when the flags ask for none). A share or token budget classifies every prompt with
    the router's classifier artefact and policy (``THINKROUTE_ROUTER__*``), built on first use. ``bodies``: a
    fresh iterator over the prompts' bodies, same order as ``custom_ids`` (read once, a chunk at a time)."""
    return make_plans(s, custom_ids, bodies, [args], quiet)[0]


def make_plans(
    s: Settings,
    custom_ids: Sequence[str],
    bodies: Callable[[], Iterable[ChatBody]],
    many: Sequence[PlanArgs],
    quiet: bool,
) -> list[Plan | None]:
    """``make_plan`` for each of ``many`` on the same requests (``compare``'s budget arms): the classifier is
    loaded, and the requests classified, once for all of them. What stays in memory per prompt: its custom id,
    its classification (with its embedding when the policy's gain head reads one) and its PromptPlan; never its
    prompt."""
    from workers.router.plan import classify_job, plan_classified
    from workers.router.policy import load_policy

    if all(a.empty for a in many):
        return [None] * len(many)
    if not any(a.needs_classifier for a in many):
        policy = load_policy(s.router.policy_path)
        return [
            None if a.empty else plan_classified(policy, custom_ids, None, a.budget, a.explore, a.explore_seed)
            for a in many
        ]
    from workers.cli.pipeline import ensure_classifier
    from workers.router.loading import load_routing

    started = time.perf_counter()

    def default() -> Path:  # the configured classifier, for a policy that names none
        return s.router.artifact_dir or ensure_classifier(s.cache_dir, not quiet)

    classifier, policy = load_routing(s, s.router.policy_path, default=default)  # embeddings as the policy needs
    with classifier:
        with _progress(len(custom_ids), quiet) as progress:
            classes = classify_job(classifier, bodies(), progress, total=len(custom_ids), policy=policy)
    if len(classes) != len(custom_ids):
        raise RuntimeError(f"{len(classes)} prompts classified for {len(custom_ids)} requests")
    log.info("classified %d prompts for planning in %.2fs", len(custom_ids), time.perf_counter() - started)
    return [
        None
        if a.empty
        else plan_classified(
            policy, custom_ids, classes if a.needs_classifier else None, a.budget, a.explore, a.explore_seed
        )
        for a in many
    ]
