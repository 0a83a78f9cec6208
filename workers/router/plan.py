"""A job's planning pass: the whole job is known before anything is published, so the submitter classifies
every prompt with the router's own classifier and policy and fixes each prompt's route (``PromptPlan``, signed
with the prompt) to meet the job's budget exactly, whatever order the prompts arrive in and however many
routers share the job.

Budgets (``Budget``):

* ``share=S``: the ``round_half_up(S * N)`` prompts of highest ``policy.priority(c)`` go to reasoning;
* ``tokens=T``: prompts ranked by predicted gain per expected reasoning token (``gain_per_token``), taken in
  that order while the expected total stays within T, and the next one too when it brings the total closer to
  T: the expected total is within half a prompt's expected tokens of T;
* ``always`` / ``never``: every prompt to reasoning / direct (the benchmark arms), no classifier needed.

Ties (equal priorities, or no priority at all: a classifier without a score and a policy without a gain model)
are broken by a hash of the custom id, never by position, so the plan does not depend on the order of the
file. The job's threshold is the ranking key of the last prompt planned to reasoning.

Exploration (``explore=F``): the ``round_half_up(F * N)`` prompts with the smallest HMAC-SHA256(seed,
custom_id): an exact, seeded sample, independent of the budget and of the order.

A job with neither a budget nor exploration has no plan (``None``, and no prompt carries one): its messages
are byte for byte what they were before plans existed. Without a budget, only the explored prompts carry a
plan (route None: the router's policy decides).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import islice
from typing import Literal, get_args

from schemas.chat import ChatBody
from schemas.messages import PromptPlan, Route
from schemas.records import JobPlan
from workers.classifier.model import Classification, Classifier
from workers.errors import InvalidInput
from workers.router.decide import needs_embeddings
from workers.router.policy import Policy, gain_per_token
from workers.router.text import prompt_text

BudgetKind = Literal["share", "tokens", "always", "never"]
SHARE_KEY = "thinkroute_reasoning_share"
TOKENS_KEY = "thinkroute_reasoning_tokens"
CLASSIFY_CHUNK = 256  # prompts per classifier call while planning (the progress callback's step)
_TIE = b"thinkroute-plan-tie-v1"

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Budget:
    """What a job asks: ``share`` (value in [0, 1]), ``tokens`` (value > 0), ``always`` or ``never``."""

    kind: BudgetKind
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(BudgetKind):
            raise InvalidInput(f"unknown budget {self.kind!r}: share=S, tokens=N, always or never")
        if self.kind in ("always", "never"):
            if self.value is not None:
                raise InvalidInput(f"budget {self.kind} takes no value")
            return
        v = self.value
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = float(v)
            object.__setattr__(self, "value", v)  # tokens=9000 and tokens=9000.0 are one budget
        if v is None or not isinstance(v, float) or not math.isfinite(v):
            raise InvalidInput(f"budget {self.kind} needs a finite value, got {v!r}")
        if self.kind == "share" and not 0.0 <= v <= 1.0:
            raise InvalidInput(f"reasoning share must be in [0, 1], got {v:g}")
        if self.kind == "tokens" and v <= 0:
            raise InvalidInput(f"reasoning tokens must be > 0, got {v:g}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``share=0.3``, ``tokens=50000``, ``always`` or ``never`` (what ``str()`` gives back)."""
        kind, sep, raw = text.strip().partition("=")
        kind = kind.strip()
        if not sep:
            if kind in ("share", "tokens"):
                raise InvalidInput(f"budget {kind} needs a value: {kind}=VALUE")
            return cls(kind)  # type: ignore[arg-type]  # checked in __post_init__
        if kind not in ("share", "tokens"):
            raise InvalidInput(f"unknown budget {text!r}: share=S, tokens=N, always or never")
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"budget {kind}: {raw.strip()!r} is not a number") from None
        return cls(kind, value)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.value is None:
            return self.kind
        v = self.value
        return f"{self.kind}={int(v) if v.is_integer() and abs(v) < 2**53 else repr(v)}"


@dataclass(frozen=True)
class PlanArgs:
    """What a job asks of its planning pass: a budget and an exploration sample (the CLI's flags, a batch's
    metadata)."""

    budget: Budget | None = None
    explore: float = 0.0
    explore_seed: int = 0

    @property
    def empty(self) -> bool:
        return self.budget is None and self.explore == 0.0

    @property
    def needs_classifier(self) -> bool:
        return self.budget is not None and self.budget.kind in ("share", "tokens")


def budget_from_metadata(md: Mapping[str, str] | None) -> Budget | None:
    """A batch's budget from its metadata (``thinkroute_reasoning_share`` or ``thinkroute_reasoning_tokens``)."""
    if not md:
        return None
    share, tokens = md.get(SHARE_KEY), md.get(TOKENS_KEY)
    if share is not None and tokens is not None:
        raise InvalidInput(f"batch metadata: {SHARE_KEY} and {TOKENS_KEY} exclude each other")
    if share is not None:
        return Budget.parse(f"share={share}")
    if tokens is not None:
        return Budget.parse(f"tokens={tokens}")
    return None


def round_half_up(x: float) -> int:
    """round(), but 2.5 -> 3 (Python's round is to even): the count a share asks of N prompts."""
    return math.floor(x + 0.5)


def tie_break(custom_id: str) -> bytes:
    return hashlib.sha256(_TIE + custom_id.encode()).digest()


def explore_sample(custom_ids: Sequence[str], share: float, seed: int) -> set[str]:
    """The exact seeded sample: the round_half_up(share * N) ids of smallest HMAC-SHA256(seed, id)."""
    if not 0.0 <= share <= 1.0:
        raise InvalidInput(f"explore share must be in [0, 1], got {share:g}")
    k = round_half_up(share * len(custom_ids))
    if k == 0:
        return set()
    key = str(seed).encode()
    ranked = sorted(custom_ids, key=lambda cid: hmac.new(key, cid.encode(), hashlib.sha256).digest())
    return set(ranked[:k])


def classify_job(
    classifier: Classifier,
    bodies: Iterable[ChatBody],
    progress: ProgressFn | None = None,
    total: int | None = None,
    *,
    policy: Policy,
) -> list[Classification]:
    """Every prompt classified as the router would classify it under ``policy`` (its text, its classifier, the
    first tier unless the policy's gain head reads embeddings), in chunks for the progress; ``bodies`` is read a
    chunk at a time (a generator over a file is never held whole; ``total``: its length, for the progress).
    The classifications are kept, embeddings included when the policy reads them: O(N), the planning pass's
    known weakness."""
    embeddings = needs_embeddings(policy)
    out: list[Classification] = []
    size = total if total is not None else (len(bodies) if isinstance(bodies, Sized) else None)
    it = iter(bodies)
    while chunk := list(islice(it, CLASSIFY_CHUNK)):
        out.extend(classifier.classify([prompt_text(b) for b in chunk], embeddings))
        if progress is not None:
            progress(len(out), size if size is not None else len(out))
    return out


def plan_job(
    classifier: Classifier | None,
    policy: Policy | None,
    prompts: Sequence[tuple[str, ChatBody]],
    budget: Budget | None,
    explore: float = 0.0,
    explore_seed: int = 0,
    progress: ProgressFn | None = None,
) -> tuple[JobPlan | None, list[PromptPlan | None]]:
    """The job's plan and each prompt's (in the order given). ``classifier`` and ``policy`` are needed for a
    share or token budget only. ``(None, [None, ...])`` when there is neither a budget nor exploration."""
    needs = budget is not None and budget.kind in ("share", "tokens")
    classes: list[Classification] | None = None
    if needs:
        if classifier is None or policy is None:
            raise ValueError(f"budget {budget} needs the classifier and the policy")
        classes = classify_job(classifier, [b for _, b in prompts], progress, policy=policy)
    return plan_classified(policy, [cid for cid, _ in prompts], classes, budget, explore, explore_seed)


def plan_classified(
    policy: Policy | None,
    custom_ids: Sequence[str],
    classes: Sequence[Classification] | None,
    budget: Budget | None,
    explore: float = 0.0,
    explore_seed: int = 0,
) -> tuple[JobPlan | None, list[PromptPlan | None]]:
    """``plan_job`` on classifications already made (one per custom id, same order)."""
    n = len(custom_ids)
    if len(set(custom_ids)) != n:
        raise ValueError("custom ids must be unique within a job")
    explored = explore_sample(custom_ids, explore, explore_seed)
    if budget is None and explore == 0.0:
        return None, [None] * n
    version = policy.version if policy is not None else None
    name = None if budget is None else str(budget)
    routes: list[Route | None] = [None] * n
    keys: list[float | None] = [None] * n
    threshold: float | None = None
    expected: float | None = None
    if budget is not None and budget.kind in ("always", "never"):
        routes = ["reasoning" if budget.kind == "always" else "direct"] * n
    elif budget is not None:
        assert policy is not None and classes is not None and len(classes) == n
        routes, keys, threshold, expected = _allocate(policy, custom_ids, classes, budget)
    plans: list[PromptPlan | None] = []
    for i, cid in enumerate(custom_ids):
        if budget is None and cid not in explored:
            plans.append(None)
            continue
        plans.append(
            PromptPlan(
                route=routes[i],
                priority=keys[i],
                threshold=threshold,
                budget=name,
                explore=cid in explored,
                policy_version=version,
            )
        )
    job = JobPlan(
        budget=name,
        policy_version=version,
        threshold=threshold,
        planned_reasoning=sum(r == "reasoning" for r in routes),
        expected_reasoning_tokens=expected,
        explore=explore,
        explore_seed=explore_seed,
        explore_total=len(explored),
    )
    return job, plans


def _allocate(
    policy: Policy, custom_ids: Sequence[str], classes: Sequence[Classification], budget: Budget
) -> tuple[list[Route | None], list[float | None], float | None, float]:
    """(route per prompt, ranking key per prompt, the job's threshold, expected reasoning tokens)."""
    n = len(custom_ids)
    cost = [policy.tokens.expected(c.category) for c in classes]
    prio = [policy.priority(c) for c in classes]
    if budget.kind == "tokens":
        keys: list[float | None] = [
            None if p is None else gain_per_token(p, e) for p, e in zip(prio, cost, strict=True)
        ]
    else:
        keys = list(prio)
    # highest key first (no key: after every key), then the custom id's hash: never the position
    order = sorted(range(n), key=lambda i: (keys[i] is None, -(keys[i] or 0.0), tie_break(custom_ids[i])))
    take: list[int] = []
    if budget.kind == "share":
        take = order[: round_half_up((budget.value or 0.0) * n)]
    else:
        target, total = budget.value or 0.0, 0.0
        for i in order:
            if total + cost[i] <= target:
                take.append(i)
                total += cost[i]
                continue
            if abs(total + cost[i] - target) < abs(total - target):
                take.append(i)
            break
    routes: list[Route | None] = ["direct"] * n
    for i in take:
        routes[i] = "reasoning"
    threshold = keys[take[-1]] if take else None
    expected = float(sum(cost[i] for i in take))
    return routes, keys, threshold, expected
