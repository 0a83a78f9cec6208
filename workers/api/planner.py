"""A batch's planning pass from its metadata: the budget (``thinkroute_reasoning_share`` or
``thinkroute_reasoning_tokens``, ``workers.router.plan.budget_from_metadata``) and the exploration sample
(``thinkroute_explore``: a share in [0, 1]; ``thinkroute_explore_seed``: an integer), as ``thinkroute submit``
plans with its flags. Built here because planning imports the router, which the intake stage may not.

The classifier (needed by a share or token budget only) is loaded on first use and kept for the server's
life; the planner runs in intake's thread, so loading is guarded by a lock."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence

from schemas.chat import ChatBody
from schemas.messages import PromptPlan
from schemas.records import JobPlan
from workers.classifier.model import Classifier
from workers.errors import InvalidInput
from workers.router.plan import PlanArgs, budget_from_metadata, classify_job, plan_classified
from workers.router.policy import Policy, load_policy
from workers.settings import Settings
from workers.submit.intake import Planner

EXPLORE_KEY = "thinkroute_explore"
EXPLORE_SEED_KEY = "thinkroute_explore_seed"


def plan_request(metadata: Mapping[str, str] | None) -> PlanArgs | None:
    """What the metadata asks of the planning pass; None: nothing (the policy routes each prompt).
    InvalidInput naming the key otherwise."""
    md = metadata or {}
    budget = budget_from_metadata(md)
    explore, seed = 0.0, 0
    if EXPLORE_KEY in md:
        try:
            explore = float(md[EXPLORE_KEY])
        except ValueError:
            raise InvalidInput(f"{EXPLORE_KEY} must be a number in [0, 1], got {md[EXPLORE_KEY]!r}") from None
        if not math.isfinite(explore) or not 0.0 <= explore <= 1.0:
            raise InvalidInput(f"{EXPLORE_KEY} must be a number in [0, 1], got {md[EXPLORE_KEY]!r}")
    if EXPLORE_SEED_KEY in md:
        try:
            seed = int(md[EXPLORE_SEED_KEY])
        except ValueError:
            raise InvalidInput(f"{EXPLORE_SEED_KEY} must be an integer, got {md[EXPLORE_SEED_KEY]!r}") from None
    if budget is None and explore == 0.0:
        return None
    return PlanArgs(budget, explore, seed)


class Planners:
    """Each batch's planner (``workers.submit.intake.Planner``), sharing one classifier."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self._lock = threading.Lock()
        self._loaded: tuple[Classifier, Policy] | None = None

    def for_batch(self, request: PlanArgs | None) -> Planner | None:
        if request is None:
            return None

        def plan(
            custom_ids: Sequence[str], bodies: Iterable[ChatBody]
        ) -> tuple[JobPlan | None, list[PromptPlan | None]]:
            if not request.needs_classifier:
                policy = load_policy(self.s.router.policy_path)
                return plan_classified(policy, custom_ids, None, request.budget, request.explore, request.explore_seed)
            classifier, policy = self._classifier()
            classes = classify_job(classifier, bodies, policy=policy)  # a chunk at a time: never all held
            return plan_classified(policy, custom_ids, classes, request.budget, request.explore, request.explore_seed)

        return plan

    def _classifier(self) -> tuple[Classifier, Policy]:
        with self._lock:
            if self._loaded is None:
                from workers.router.loading import load_routing

                self._loaded = load_routing(self.s, self.s.router.policy_path)  # the policy's own classifier first
            return self._loaded

    def close(self) -> None:
        with self._lock:
            if self._loaded is not None:
                self._loaded[0].close()
                self._loaded = None
