"""Stand-in for engineer "budget"'s router side (drop with its commit): a planned route wins over the policy."""

from schemas.messages import PromptPlan
from tests.unit.test_policy import LABELS, c
from workers.router.policy import load_policy


def test_a_planned_route_wins_and_is_recorded() -> None:
    p = load_policy(None, LABELS)
    assert p.decide(c("math"), None, "M", "v").route == "reasoning"
    assert p.decide(c("law"), None, "M", "v").route == "direct"
    never = p.decide(c("math"), None, "M", "v", PromptPlan(route="direct", budget="never"))
    always = p.decide(c("law"), None, "M", "v", PromptPlan(route="reasoning", budget="always", threshold=0.5))
    assert (never.route, never.use_reasoning, never.reason, never.budget) == ("direct", False, "plan:never", "never")
    assert (always.route, always.use_reasoning, always.reason, always.job_threshold) == (
        "reasoning",
        True,
        "plan:always",
        0.5,
    )
    free = p.decide(c("math"), None, "M", "v", PromptPlan(explore=True))  # no route: the policy decides
    assert (free.route, free.explore, free.budget) == ("reasoning", True, None)
