"""Test data shared by several test modules."""

from __future__ import annotations

from typing import Any

from schemas.messages import RouteDecision


def route_decision(route: str = "direct", **overrides: Any) -> RouteDecision:
    """A routing decision with plausible defaults: reasoning routes look like math, direct ones like law."""
    fields: dict[str, Any] = {
        "route": route,
        "category": "math" if route == "reasoning" else "law",
        "confidence": 0.9,
        "use_reasoning": route == "reasoning",
        "model": "m",
        "policy_version": "p",
        "classifier_version": "c",
        "reason": "category",
        "truncated": False,
    }
    return RouteDecision(**(fields | overrides))
