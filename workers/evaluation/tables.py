"""Plain-text tables for ``thinkroute eval``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POLICIES = ("router", "always", "never", "oracle")


def replay_table(result: Mapping[str, Any]) -> str:
    data = result.get("data", {})
    lines = [
        f"replay: {data.get('file', '?')} ({data.get('split', '?')} split), n={result['n']}, "
        f"policy {result['policy_version']}, classifier {result['classifier_version']}",
        "",
        f"{'policy':<8} {'accuracy':>8} {'mean tok':>9} {'total tok':>10} {'latency s':>9} {'reasoning':>9}",
    ]
    for p in POLICIES:
        m = result["policies"][p]
        lines.append(
            f"{p:<8} {m['accuracy']:>8.3f} {m['mean_tokens']:>9.1f} {m['total_tokens']:>10} "
            f"{m['mean_latency_s']:>9.2f} {m['reasoning_share']:>9.1%}"
        )
    lines += ["", f"{'category':<18} {'n':>4} " + " ".join(f"{p + ' acc/tok':>16}" for p in POLICIES)]
    for cat, per in result["per_category"].items():
        cells = " ".join(f"{per[p]['accuracy']:>7.3f}/{per[p]['mean_tokens']:>8.0f}" for p in POLICIES)
        lines.append(f"{cat:<18} {per['router']['n']:>4} {cells}")
    lines.append(f"\nlatency: {result['latency_model']}")
    return "\n".join(lines)


def curve_table(result: Mapping[str, Any]) -> str:
    lines = [
        f"model routing: small {result['small']} / large {result['large']}, n={result['n']} ({result['questions']})",
        "",
        f"{'policy':<14} {'accuracy':>8} {'mean tok':>9} {'large':>7}",
    ]
    for name, m in result["policies"].items():
        lines.append(f"{name:<14} {m['accuracy']:>8.3f} {m['mean_tokens']:>9.1f} {m['large_share']:>7.1%}")
    lines += ["", "router curve (threshold from validation-slice quantiles)"]
    for m in result["curve"]:
        lines.append(
            f"  target {m['target_share']:>4.0%}: accuracy {m['accuracy']:.3f}, mean tokens {m['mean_tokens']:.1f}, "
            f"large {m['large_share']:.1%}"
        )
    lines += ["", f"{'category':<18} {'n':>4} {'small':>6} {'large':>6} {'rt@50%':>7} {'oracle':>7}"]
    for cat, m in result["per_category"].items():
        lines.append(
            f"{cat:<18} {m['n']:>4} {m['small']['accuracy']:>6.3f} {m['large']['accuracy']:>6.3f} "
            f"{m['router_50']['accuracy']:>7.3f} {m['oracle']['accuracy']:>7.3f}"
        )
    return "\n".join(lines)


def _v(stat: Mapping[str, Any], fmt: str = ".3f") -> str:
    value, ci = stat.get("value"), stat.get("ci95")
    if value is None:
        return "not reached"
    text = f"{value:{fmt}}" + (f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "")
    if "resamples_reached" in stat:
        text += f" (reached in {stat['resamples_reached']:.0%} of resamples)"
    return text


def records_table(result: Mapping[str, Any]) -> str:
    """The ``eval --records`` report: arms, accuracy at 10..90% (router, random, oracle), cost to 95%."""
    rec = result["records"]
    tokens = result["cost"].startswith("mean tokens")
    cf = ".0f" if tokens else ".1%"
    lines = [
        f"records: {result['cheap']} -> {result['expensive']}, {result['split']} split: {rec['used']} used of "
        f"{rec['in_split']} in the split ({rec['in_file']} in the file; {rec['skipped_missing_arm']} skipped: "
        "missing an arm)",
        f"priority: {result['priority']} (policy {result['policy_version']}, "
        f"classifier {result['classifier_version']})",
        f"cost: {result['cost']}; 95% intervals: {result['bootstrap']['resamples']} paired bootstrap resamples",
        "",
    ]
    for arm in ("cheap", "expensive"):
        m = result["arms"][arm]
        lines.append(f"always {arm:<9} accuracy {_v(m['accuracy'])}  cost {_v(m['cost'], cf)}")
    d = result.get("policy_decisions")
    if d:
        cost = f"{d['cost']:.0f} tokens" if "cost" in d else f"{d['expensive_share']:.1%}"
        lines.append(
            f"policy decisions  accuracy {d['accuracy']:.3f}  expensive {d['expensive_share']:.1%}  cost {cost}"
        )
    head = f"{'share':>5} {'router cost':>22} {'router':>22} {'random':>22} {'oracle':>22} {'router-random':>24}"
    lines += ["", "accuracy at equal cost (random and oracle at the router's cost)", head]
    for p in result["at_shares"]:
        lines.append(
            f"{p['share']:>5.0%} {_v(p['router']['cost'], cf):>22} {_v(p['router']['accuracy']):>22} "
            f"{_v(p['random']['accuracy']):>22} {_v(p['oracle']['accuracy']):>22} "
            f"{_v(p['router_minus_random'], '+.3f'):>24}"
        )
    reach = result["cost_to_95"]
    lines += ["", f"cost to reach 95% of the expensive arm's accuracy ({reach['target_accuracy']:.3f}):"]
    for p in ("router", "random", "oracle"):
        share, cost = reach[p]["share"], reach[p]["cost"]
        extra = f", cost {_v(cost, cf)}" if tokens else ""
        lines.append(f"  {p:<7} share {_v(share, '.1%')}{extra}")
    if "no token counts" in result["cost"]:
        lines.append("\nno token counts on both arms: cost is the share of prompts sent to the expensive arm")
    return "\n".join(lines)
