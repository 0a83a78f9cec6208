from pathlib import Path

import pytest

from workers.classifier.model import Classification
from workers.errors import ConfigError
from workers.router.policy import load_policy

LABELS = [
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
]


def c(category: str, confidence: float = 0.9, truncated: bool = False) -> Classification:
    return Classification(category=category, confidence=confidence, truncated=truncated, n_tokens=20)


def test_default_table_reasons_on_math_physics_chemistry_only() -> None:
    """Without a reasoning score the shipped policy falls back to the published table."""
    p = load_policy(None, LABELS)
    on = {cat for cat in LABELS if p.decide(c(cat), None, "M", "v").use_reasoning}
    assert on == {"math", "physics", "chemistry"}
    d = p.decide(c("math", 0.8, truncated=True), "req-model", "M", "clf-1")
    assert (d.route, d.reason, d.model, d.policy_version, d.classifier_version, d.truncated) == (
        "reasoning",
        "category",
        "req-model",
        "score-v1",
        "clf-1",
        True,
    )
    assert p.decide(c("law"), None, "M", "v").model == "M"


def test_confidence_floor_applies_the_low_confidence_rule(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "version: t2\nconfidence_floor: 0.6\nlow_confidence: {use_reasoning: true, reasoning_effort: low}\n"
        "default: {use_reasoning: false}\ncategories:\n  math: {use_reasoning: true, reasoning_effort: high, "
        "model: big}\nmodels: {direct: small}\n"
    )
    p = load_policy(f, LABELS)
    low = p.decide(c("law", 0.59), None, "M", "v")
    assert (low.route, low.reason, low.reasoning_effort, low.model) == ("reasoning", "confidence_floor", "low", "M")
    math = p.decide(c("math", 0.61), "req", "M", "v")
    assert (math.reason, math.reasoning_effort, math.model) == ("category", "high", "big")
    law = p.decide(c("law", 0.9), "req", "M", "v")
    assert (law.route, law.reason, law.model, law.reasoning_effort) == ("direct", "default", "small", None)


def test_bad_policies_fail_clearly(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("version: x\ncategories:\n  astrology: {use_reasoning: true}\n")
    with pytest.raises(ConfigError, match="astrology"):
        load_policy(f, LABELS)
    f.write_text("version: x\nconfidence_floor: 2\n")
    with pytest.raises(ConfigError, match="confidence_floor"):
        load_policy(f, LABELS)
    f.write_text("version: x\nunknown_key: 1\n")
    with pytest.raises(ConfigError, match="unknown_key"):
        load_policy(f, LABELS)
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml", LABELS)
