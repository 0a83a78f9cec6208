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
