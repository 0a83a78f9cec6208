"""The circuit breaker: a pure state machine on a fake clock, checked on generated sequences of outcomes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.inference.breaker import Admission, Breaker, Breakers, Outcome

S, F, N = Outcome.SUCCESS, Outcome.FAILURE, Outcome.NEUTRAL


@dataclass
class Clock:
    t: float = 0.0

    def __call__(self) -> float:
        return self.t


def breaker(failures: int = 3, cooldown_s: float = 10.0) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(failures, cooldown_s, clock), clock


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_run() -> None:
    b, _ = breaker(failures=3)
    for outcome in (F, F, S, F, N, F):  # a success resets; a permanent error neither counts nor resets
        adm = b.admit()
        assert adm is not None
        b.record(adm, outcome)
    assert (b.state, b.consecutive, b.opens) == ("closed", 2, 0)
    b.record(b.admit() or Admission(-1), F)
    assert (b.state, b.opens) == ("open", 1)
    assert b.admit() is None and not b.retry_allowed()


def test_half_open_lets_one_probe_through_and_its_outcome_decides() -> None:
    b, clock = breaker(failures=1, cooldown_s=10.0)
    b.record(b.admit() or Admission(-1), F)
    clock.t = 9.99
    assert b.state == "open" and b.admit() is None
    clock.t = 10.0
    assert b.state == "half_open"
    probe = b.admit()
    assert probe is not None and probe.probe
    assert b.admit() is None  # one probe at a time
    b.record(probe, N)  # a 400 says nothing: the probe is handed back
    probe = b.admit()
    assert probe is not None and probe.probe
    b.record(probe, F)  # the probe failed: open again, for a new cool-down from now
    assert (b.state, b.opens) == ("open", 2)
    clock.t = 19.99
    assert b.admit() is None
    clock.t = 20.0
    probe = b.admit()
    assert probe is not None
    b.record(probe, S)
    assert (b.state, b.consecutive) == ("closed", 0)
    assert b.retry_allowed() and b.admit() == Admission(probe.generation + 1)


def test_outcomes_of_an_earlier_period_are_ignored() -> None:
    b, clock = breaker(failures=2, cooldown_s=1.0)
    slow = b.admit()  # in flight across the opening and the closing
    assert slow is not None
    b.record(b.admit() or Admission(-1), F)
    b.record(b.admit() or Admission(-1), F)
    assert b.state == "open"
    b.record(slow, S)  # a success admitted before it opened does not close it
    assert b.state == "open"
    clock.t = 1.0
    probe = b.admit()
    assert probe is not None
    b.record(slow, F)  # nor does a stale failure count against the probe's period
    b.record(probe, S)
    b.record(slow, F)
    assert (b.state, b.consecutive) == ("closed", 0)


def test_settings_are_checked_and_breakers_are_per_url() -> None:
    with pytest.raises(ValueError):
        Breaker(0, 1.0)
    clock = Clock()
    bs = Breakers(1, 5.0, clock)
    a = bs["http://a/v1"]
    a.record(a.admit() or Admission(-1), F)
    assert bs["http://a/v1"] is a and bs["http://b/v1"].state == "closed"
    assert [(url, b.state) for url, b in bs] == [("http://a/v1", "open"), ("http://b/v1", "closed")]


def reference(steps: list[tuple[str, object]], n: int, cooldown: float) -> tuple[list[str], int]:
    """The spec, written out for one request at a time: which endpoint each request goes to, and openings."""
    t, state, run, opened_at, opens, where = 0.0, "closed", 0, 0.0, 0, []
    for kind, x in steps:
        if kind == "tick":
            t += float(x)  # type: ignore[arg-type]
            continue
        if state == "open" and t >= opened_at + cooldown:
            state = "half"
        if state == "open":
            where.append("fallback")
            continue
        where.append("primary")
        if state == "half":
            if x is S:
                state, run = "closed", 0
            elif x is F:
                state, opened_at, opens = "open", t, opens + 1
        elif x is S:
            run = 0
        elif x is F:
            run += 1
            if run >= n:
                state, opened_at, opens, run = "open", t, opens + 1, 0
    return where, opens


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.sampled_from([S, F, F, F, N])),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 3.0])),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, n=st.integers(1, 5), cooldown=st.sampled_from([0.0, 1.0, 2.5]))
def test_one_request_at_a_time_follows_the_spec(steps: list[tuple[str, object]], n: int, cooldown: float) -> None:
    b, clock = breaker(n, cooldown)
    where = []
    for kind, x in steps:
        if kind == "tick":
            clock.t += float(x)  # type: ignore[arg-type]
            continue
        adm = b.admit()
        where.append("fallback" if adm is None else "primary")
        if adm is not None:
            assert isinstance(x, Outcome)
            b.record(adm, x)
        assert b.consecutive < n  # never n failures in a row without opening
    expected, opens = reference(steps, n, cooldown)
    assert where == expected
    assert b.opens == opens


OPS = st.lists(
    st.one_of(
        st.just(("admit", 0)),
        st.tuples(st.just("record"), st.integers(0, 1_000)),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 2.0])),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, outcomes=st.lists(st.sampled_from([S, F, N]), min_size=1, max_size=50))
def test_concurrent_requests_never_hold_two_probes(ops: list[tuple[str, object]], outcomes: list[Outcome]) -> None:
    """Requests admitted together and finishing in any order: at most one probe out at a time, no retry on the
    primary unless closed, and the breaker only opens on a failure it counted."""
    b, clock = breaker(2, 1.0)
    out: list[Admission] = []
    for i, (kind, x) in enumerate(ops):
        if kind == "tick":
            clock.t += float(x)  # type: ignore[arg-type]
        elif kind == "admit":
            adm = b.admit()
            if adm is not None:
                out.append(adm)
        elif out:
            adm = out.pop(int(x) % len(out))  # type: ignore[call-overload]
            before, outcome = b.opens, outcomes[i % len(outcomes)]
            b.record(adm, outcome)
            assert b.opens == before or outcome is F
        probes = [a for a in out if a.probe and a.generation == b._generation]
        assert len(probes) <= (1 if b.state == "half_open" else 0)
        assert b.retry_allowed() == (b.state == "closed")
