"""The drain-time estimate and the --group parser, on made-up measurements."""

from __future__ import annotations

import pytest

from workers.cli.lag import parse_groups
from workers.kafka.lag import DrainTracker, GroupLag, PartitionLag, estimate_drain
from workers.settings import Settings


def snap(t: float, *parts: tuple[int | None, int]) -> GroupLag:
    rows = []
    for i, (committed, end) in enumerate(parts):
        rows.append(PartitionLag("t", i, committed, end, end - (committed or 0)))
    return GroupLag("g", t, tuple(rows))


def test_rate_and_eta_from_committed_progress() -> None:
    a = snap(100.0, (10, 110), (None, 50))  # lag 100 + 50
    b = snap(110.0, (60, 130), (20, 50))  # 70 records committed in 10 s; lag 70 + 30
    d = estimate_drain([a, b])
    assert d.rate_per_s == pytest.approx(7.0)
    assert d.eta_s == pytest.approx(100 / 7.0)


def test_edge_cases() -> None:
    assert estimate_drain([]).eta_s is None
    one = estimate_drain([snap(1.0, (5, 10))])
    assert one.rate_per_s is None and one.eta_s is None
    stalled = estimate_drain([snap(1.0, (5, 10)), snap(2.0, (5, 12))])
    assert stalled.rate_per_s == 0.0 and stalled.eta_s is None
    drained = estimate_drain([snap(1.0, (5, 10)), snap(2.0, (10, 10))])
    assert drained.eta_s == 0.0 and drained.rate_per_s == pytest.approx(5.0)
    reset = estimate_drain([snap(1.0, (50, 60)), snap(2.0, (0, 60))])  # offsets moved back
    assert reset.rate_per_s is None and reset.eta_s is None


def test_tracker_keeps_only_the_window() -> None:
    tr = DrainTracker(window_s=10)
    for i in range(30):  # one measurement per second, 2 records committed per second
        d = tr.add(snap(float(i), (2 * i, 1000)))
    assert d.rate_per_s == pytest.approx(2.0)
    assert tr.history[0].taken_at >= 29 - 10 - 1 and len(tr.history) <= 12


def test_group_specs() -> None:
    s = Settings(kafka_bootstrap="x:1")
    assert parse_groups(None, s) == {
        "thinkroute-router": ["thinkroute.prompts"],
        "thinkroute-inference": ["thinkroute.reasoning", "thinkroute.direct"],
    }
    assert parse_groups(["a=t1,t2", "b=t3", "a=t4"], s) == {"a": ["t1", "t2", "t4"], "b": ["t3"]}
    for bad in ("a", "=t", "a="):
        with pytest.raises(ValueError):
            parse_groups([bad], s)
