"""The routing policy: per-category rules, a per-prompt reasoning score with a calibrated threshold,
a default and a confidence floor.

A rule's ``use_reasoning`` is ``true`` (always), ``false`` (never) or ``"score"``: reasoning when the
prompt's ``reasoning_score`` plus the rule's ``score_offset`` reaches ``reasoning.threshold`` (derived
from data by ``thinkroute calibrate``). Without a score (an artefact without a score head) or without a
``reasoning`` section, a ``"score"`` rule falls back to its own ``fallback``, else ``reasoning.fallback``.

``classifier`` names the artefact dir of the classifier the policy's categories are for (a custom one from
``thinkroute train --data``); ``load_policy`` resolves a relative one against the policy file's directory,
so a loaded policy holds it absolute. None: the router's configured classifier (``ROUTER__ARTIFACT_DIR``, else
the shipped one).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.messages import Effort, PromptPlan, Route, RouteDecision
from workers.classifier.gain import GainModel
from workers.classifier.model import Classification
from workers.errors import ConfigError


def gain_per_token(priority: float, expected_tokens: float) -> float:
    """What a token budget ranks by: predicted gain per expected reasoning token.

    A positive priority (a score in [0, 1], or a positive predicted gain) is divided by the expected tokens:
    cheaper prompts of equal gain first. A priority of 0 or below (reasoning predicted not to help) is
    multiplied by them instead, so it stays at or below every positive one and, among such prompts, the more
    tokens the lower. Monotone in the priority for a given cost, decreasing in the cost for a given priority.
    """
    e = max(expected_tokens, 1.0)
    return priority / e if priority > 0 else priority * e


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    use_reasoning: bool | Literal["score"]
    reasoning_effort: Effort | None = None
    model: str | None = None
    score_offset: float = 0.0
    fallback: bool | None = None  # a "score" rule when there is no score; None: reasoning.fallback


class ScoreRule(BaseModel):
    """The per-prompt part: reasoning when score + offset >= threshold (rules with ``use_reasoning: score``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float
    fallback: bool = False  # "score" rules when the classifier gives no score
    calibration: dict[str, Any] = Field(default_factory=dict)  # how the threshold was derived (recorded)


class TokenModel(BaseModel):
    """Expected reasoning tokens of a prompt sent to reasoning, per category (``"*"``: any other), from recorded
    outcomes; what a token budget (``--reasoning-tokens``) is planned against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reasoning: dict[str, float] = Field(default_factory=lambda: {"*": 1394.0})
    data: str = ""

    def expected(self, category: str) -> float:
        return self.reasoning.get(category, self.reasoning.get("*", 1394.0))


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    confidence_floor: float = Field(default=0.0, ge=0, le=1)
    low_confidence: Rule = Rule(use_reasoning=False)
    default: Rule = Rule(use_reasoning=False)
    categories: dict[str, Rule] = Field(default_factory=dict)
    models: dict[Route, str] = Field(default_factory=dict)
    reasoning: ScoreRule | None = None
    gain: GainModel | None = Field(default=None, description="the fitted gain head (`thinkroute fit`), if any")
    tokens: TokenModel = Field(default_factory=TokenModel)
    classifier: str | None = None
    """The classifier artefact dir this policy's categories are of (`thinkroute train --data`); None: the shipped.
    A relative path is resolved against the policy file's directory (``load_policy``)."""

    def priority(self, c: Classification) -> float | None:
        """What a budget ranks prompts by: the gain model's predicted gain, else the reasoning score."""
        if self.gain is not None:
            return self.gain.priority(c)
        return c.reasoning_score

    def wants_reasoning(self, rule: Rule, score: float | None) -> tuple[bool, bool]:
        """(use reasoning, decided by the score) for a rule and a prompt's score."""
        if rule.use_reasoning != "score":
            return bool(rule.use_reasoning), False
        if self.reasoning is None or score is None:
            if rule.fallback is not None:
                return rule.fallback, False
            return self.reasoning is not None and self.reasoning.fallback, False
        return score + rule.score_offset >= self.reasoning.threshold, True

    def rule_for(self, c: Classification) -> tuple[Rule, str]:
        """The rule that applies to a classification, and the name of the reason."""
        if c.confidence < self.confidence_floor:
            return self.low_confidence, "confidence_floor"
        rule = self.categories.get(c.category)
        if rule is None:
            return self.default, "default"
        return rule, "category"

    def decide(
        self,
        c: Classification,
        request_model: str | None,
        default_model: str,
        classifier_version: str,
        plan: PromptPlan | None = None,
    ) -> RouteDecision:
        """The route of one prompt. A planned route (``plan.route``, fixed at submit by the job's budget) wins,
        reason ``plan:<budget>``; the effort and model are still those of the rule that applies to the prompt.
        ``priority`` is what a budget ranks by (per expected token for a token budget, on the plan's scale)."""
        rule, reason = self.rule_for(c)
        priority = self.priority(c)
        if plan is not None and plan.route is not None:
            route: Route = plan.route
            use = route == "reasoning"
            reason = f"plan:{plan.budget}"
            if priority is not None and plan.budget is not None and plan.budget.startswith("tokens"):
                priority = gain_per_token(priority, self.tokens.expected(c.category))
        else:
            use, by_score = self.wants_reasoning(rule, c.reasoning_score)
            if by_score:
                reason = f"{reason}+score"
            route = "reasoning" if use else "direct"
        model = rule.model or self.models.get(route) or request_model or default_model
        return RouteDecision(
            route=route,
            category=c.category,
            confidence=round(float(c.confidence), 6),
            use_reasoning=use,
            reasoning_effort=rule.reasoning_effort if use else None,
            reasoning_score=None if c.reasoning_score is None else round(float(c.reasoning_score), 6),
            model=model,
            policy_version=self.version,
            classifier_version=classifier_version,
            reason=reason,
            truncated=c.truncated,
            priority=None if priority is None else float(priority),
            job_threshold=None if plan is None else plan.threshold,
            budget=None if plan is None else plan.budget,
            explore=plan is not None and plan.explore,
        )

    def other_arm(
        self, c: Classification, d: RouteDecision, request_model: str | None, default_model: str
    ) -> RouteDecision:
        """The decision for the arm ``d`` did not choose (an exploration shadow), by the rule that decided ``d``:
        the rule's effort for reasoning; its model when the rule may pick that route (a ``score`` rule, or one
        fixed to it), else the policy's model for the route, the request's, the default. The rest (category,
        scores, versions, reason) is ``d``'s, with ``explore`` set."""
        rule, _ = self.rule_for(c)
        route: Route = "direct" if d.route == "reasoning" else "reasoning"
        use = route == "reasoning"
        owns = rule.use_reasoning == "score" or rule.use_reasoning is use
        model = (rule.model if owns else None) or self.models.get(route) or request_model or default_model
        update = {
            "route": route,
            "use_reasoning": use,
            "reasoning_effort": rule.reasoning_effort if use else None,
            "model": model,
            "explore": True,
        }
        return d.model_copy(update=update)


def load_policy(path: Path | None = None, known_categories: list[str] | None = None) -> Policy:
    """Read a policy file (the shipped table when ``path`` is None) and check it against the labels (when given:
    those of the classifier the policy names, see `check_policy`). A relative ``classifier`` is resolved
    against the file's directory."""
    if path is None:
        text = resources.files("workers.router").joinpath("default_policy.yaml").read_text("utf-8")
        where = "default_policy.yaml"
    else:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read policy file {path}: {exc}") from exc
        where = str(path)
    try:
        policy = Policy.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid policy file {where}: {exc}") from exc
    if policy.classifier is not None:
        base = Path.cwd() if path is None else path.parent
        resolved = (base / Path(policy.classifier).expanduser()).resolve()
        policy = policy.model_copy(update={"classifier": str(resolved)})
    if known_categories is not None:
        check_policy(policy, known_categories, where)
    return policy


def check_policy(policy: Policy, labels: list[str], where: str = "") -> None:
    """A ConfigError unless the policy fits a classifier with these labels: every category it has a rule for is
    one of them, and a gain head was fitted on the same labels, in the same order (its features include the
    label probabilities)."""
    name = where or policy.version
    unknown = sorted(set(policy.categories) - set(labels))
    if unknown:
        raise ConfigError(f"policy {name} names categories the classifier does not know: {unknown}")
    if policy.gain is not None and policy.gain.labels != labels:
        raise ConfigError(f"policy {name}: its gain head {policy.gain.version} was fitted on other labels")
