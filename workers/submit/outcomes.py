"""A job's exploration sample as outcome records (``schemas.outcomes``): what ``thinkroute export-outcomes`` writes
and ``thinkroute fit --from-job`` learns from (pure).

One record per explored request whose two answers both completed: the routed result (``RequestResult``) and
the other arm's (``ExplorationRecord``), each an arm named by its route and effort (``direct``, ``reasoning``,
``reasoning:low|medium|high``), with ``tokens`` = completion tokens (thinking included) and ``latency_s`` = the
LLM call's time, retries included. The prompt is the exploration record's ``body`` with the request's
``custom_id``; ``id`` is the request id (unique across jobs); ``category`` the router's; ``answer`` the
request's reference (``metadata.reference``, ``workers.grading.reference_of``) when it carries one.

**correct.** When both answers are graded against a reference, each arm's grade (``meta.label = "graded"``).
Otherwise a label-free proxy, marked ``meta.label = "agreement"``: the reasoning arm is taken as right
(``correct = 1``) and the direct arm is right when its final answer agrees with the reasoning arm's after
normalisation (``workers.grading.agree``; an arm without a final answer does not agree), the same convention
as the savings report (``workers.submit.savings``). Such a record says where thinking changed the answer, not
which answer is right: a learner reading it learns "the arms disagree", never "reasoning is wrong".

Left out (counted by reason in ``skipped`` when the caller passes a dict): a request without its routed
result, either answer failed, and an escalated routed result (its final arm may equal the shadow's, and its
first attempt is a third answer).
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.messages import RouteDecision
from schemas.outcomes import ArmOutcome, OutcomeRecord
from schemas.records import ExplorationRecord, Grade, RequestResult, Usage
from workers.grading import reference_of
from workers.submit.savings import Pair

GRADED = "graded"
AGREEMENT = "agreement"


def arm_of(d: RouteDecision) -> str:
    """The outcome-records arm of a decision: ``direct``, ``reasoning`` or ``reasoning:<effort>``."""
    if d.route == "reasoning" and d.reasoning_effort is not None:
        return f"reasoning:{d.reasoning_effort}"
    return d.route


def _arm(correct: float, usage: Usage, latency_s: float) -> ArmOutcome:
    return ArmOutcome(correct=correct, tokens=usage.completion_tokens, latency_s=latency_s)


def _skip_reason(routed: RequestResult | None, shadow: ExplorationRecord) -> str | None:
    if routed is None:
        return "no_result"
    if routed.status != "completed" or shadow.status != "completed":
        return "failed"
    if routed.escalated_from is not None or routed.route.route == shadow.route.route:
        return "escalated"
    return None


def _correct(routed: RequestResult, shadow: ExplorationRecord) -> tuple[float, float, str]:
    """(routed arm's correct, shadow arm's correct, label)."""
    if routed.grade is not None and shadow.grade is not None:
        return float(routed.grade.correct), float(shadow.grade.correct), GRADED
    pair = Pair(routed, shadow)
    agrees = pair.direct_agrees
    return (agrees, 1.0, AGREEMENT) if pair.direct_routed else (1.0, agrees, AGREEMENT)


def _reference(shadow: ExplorationRecord, grades: Iterable[Grade | None]) -> str | None:
    ref = reference_of(shadow.body)
    if ref is not None:
        return ref[0]
    return next((g.reference for g in grades if g is not None), None)


def outcomes_of(
    results: Iterable[RequestResult],
    explorations: Iterable[ExplorationRecord],
    skipped: dict[str, int] | None = None,
) -> list[OutcomeRecord]:
    """Outcome records of a job's explored requests (see the module docstring), in input (line) order; the
    requests left out are counted by reason into ``skipped`` (no_result, failed, escalated)."""
    by_id = {r.request_id: r for r in results}
    out: list[OutcomeRecord] = []
    skipped = {} if skipped is None else skipped
    for e in sorted(explorations, key=lambda x: x.line):
        routed = by_id.get(e.request_id)
        why = _skip_reason(routed, e)
        if why is not None or routed is None:
            skipped[why or "no_result"] = skipped.get(why or "no_result", 0) + 1
            continue
        c_routed, c_shadow, label = _correct(routed, e)
        outcomes = {
            arm_of(routed.route): _arm(c_routed, routed.usage, routed.llm_latency_s),
            arm_of(e.route): _arm(c_shadow, e.usage, e.llm_latency_s),
        }
        out.append(
            OutcomeRecord(
                id=e.request_id,
                custom_id=e.custom_id,
                body=e.body,
                category=routed.route.category,
                answer=_reference(e, (routed.grade, e.grade)),
                source=f"exploration:{e.job_id}",
                outcomes=outcomes,
                meta={"label": label, "routed": arm_of(routed.route)},
            )
        )
    return out
