"""The cascade evaluation's arithmetic on hand-made items (accuracy, tokens, cost, escalation share)."""

from __future__ import annotations

import pytest

from workers.evaluation.cascade import Item, evaluate, held_out, rank_keys


def _items() -> dict[int, Item]:
    """Held-out ids only (train ids ranked separately below): a hard "math" key and an easy "law" key."""
    held = [q for q in range(200) if held_out(q)][:4]
    return {
        held[0]: Item("math", cheap_ok=False, exp_ok=True, cheap_tok=100, exp_tok=1000, conf=0.1),
        held[1]: Item("math", cheap_ok=True, exp_ok=True, cheap_tok=100, exp_tok=1000, conf=0.9),
        held[2]: Item("law", cheap_ok=True, exp_ok=False, cheap_tok=100, exp_tok=1000, conf=0.8),
        held[3]: Item("law", cheap_ok=False, exp_ok=False, cheap_tok=100, exp_tok=1000, conf=0.2),
    }


def test_split_is_deterministic_and_about_half() -> None:
    assert [held_out(q) for q in range(10)] == [held_out(q) for q in range(10)]
    assert 400 < sum(held_out(q) for q in range(1000)) < 600


def test_points() -> None:
    items = _items()
    train = [q for q in range(200) if not held_out(q)][:2]
    items[train[0]] = Item("math", False, True, 100, 1000, 0.5)
    items[train[1]] = Item("law", True, True, 100, 1000, 0.5)
    pts = {(p.strategy, p.param): p for p in evaluate("d", items, thresholds=(0.5,), w=2.0)}
    cheap, exp, oracle = pts[("always-cheap", "")], pts[("always-expensive", "")], pts[("oracle", "")]
    assert (cheap.accuracy, cheap.mean_tokens, cheap.cost) == (0.5, 100, 100)
    assert (exp.accuracy, exp.mean_tokens, exp.cost, exp.escalated) == (0.5, 1000, 2000, 1.0)
    # oracle: expensive on the two questions the cheap answer gets wrong
    assert (oracle.accuracy, oracle.mean_tokens, oracle.cost) == (0.75, 550, 1050)
    # cascade t=0.5 escalates the conf 0.1 and 0.2 answers: both attempts paid
    casc = pts[("cascade", "t=0.5")]
    assert (casc.accuracy, casc.mean_tokens, casc.cost, casc.escalated) == (0.75, 600, 1100, 0.5)
    # route-only top 1: math (the train gain is on math) goes expensive
    route = pts[("route-only", "top 1 keys")]
    assert (route.accuracy, route.mean_tokens) == (0.75, 550)
    assert route.latency_s == pytest.approx(550 / 60)


def test_rank_keys_by_gain_per_cost() -> None:
    train = [Item("a", False, True, 100, 200, 0), Item("b", False, True, 100, 2000, 0), Item("c", True, False, 1, 2, 0)]
    assert [k for k, _, _ in rank_keys(train)] == ["a", "b", "c"]
