"""A circuit breaker per primary LLM endpoint (base URL): pure state, its clock injected.

closed -> open after ``failures`` consecutive transient failures (attempts: timeouts, dropped connections,
429, 5xx). A permanent error of the request itself (a 400, say) is neither a failure nor a success: it does
not count and resets nothing. open: `Breaker.admit` answers None, the caller goes to the fallback. After
``cooldown_s`` the breaker is half-open: the next `admit` hands out the one probe; its success closes the
breaker, its failure opens it again for another cool-down, its permanent error gives the probe back (the
next request probes). While open or half-open no request retries on the primary (`retry_allowed`).

Outcomes of attempts admitted before the breaker last closed or opened (a stale generation: a slow call that
was in flight across a transition) are ignored, so only the current period's attempts decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

State = Literal["closed", "open", "half_open"]


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # transient: worth retrying elsewhere or later
    NEUTRAL = "neutral"  # permanent error of the request itself: says nothing about the endpoint


@dataclass(frozen=True)
class Admission:
    """A request let through to the primary: the breaker period it belongs to, and whether it is the probe."""

    generation: int
    probe: bool = False


@dataclass
class Breaker:
    failures: int
    cooldown_s: float
    clock: Callable[[], float] = time.monotonic
    opens: int = 0  # times it opened (closed -> open, or a failed probe: half_open -> open)
    _state: State = "closed"
    _consecutive: int = 0
    _opened_at: float = 0.0
    _probe_out: bool = False
    _generation: int = 0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.cooldown_s < 0:
            raise ValueError("a breaker needs failures >= 1 and cooldown_s >= 0")

    @property
    def state(self) -> State:
        """The state now: an open breaker whose cool-down passed is half-open."""
        if self._state == "open" and self.clock() >= self._opened_at + self.cooldown_s:
            return "half_open"
        return self._state

    @property
    def consecutive(self) -> int:
        return self._consecutive

    def admit(self) -> Admission | None:
        """Whether a new request may go to the primary: an Admission (closed; or the probe, half-open), or None
        (open, or half-open with the probe out): send it to the fallback."""
        state = self.state
        if state == "closed":
            return Admission(self._generation)
        if state == "half_open" and not self._probe_out:
            if self._state == "open":  # the cool-down just passed: a new period, the probe's
                self._state = "half_open"
                self._generation += 1
            self._probe_out = True
            return Admission(self._generation, probe=True)
        return None

    def retry_allowed(self) -> bool:
        """Whether a request whose primary attempt failed may try the primary again (only while closed)."""
        return self.state == "closed"

    def record(self, admission: Admission, outcome: Outcome) -> None:
        """One attempt of an admitted request ended with ``outcome``."""
        if admission.generation != self._generation:
            return  # admitted before the last transition
        if self._state == "closed":
            if outcome is Outcome.SUCCESS:
                self._consecutive = 0
            elif outcome is Outcome.FAILURE:
                self._consecutive += 1
                if self._consecutive >= self.failures:
                    self._open()
        elif self._state == "half_open" and admission.probe:
            self._probe_out = False
            if outcome is Outcome.SUCCESS:
                self._state, self._consecutive = "closed", 0
                self._generation += 1
            elif outcome is Outcome.FAILURE:
                self._open()

    def _open(self) -> None:
        self._state, self._opened_at, self._consecutive = "open", self.clock(), 0
        self._generation += 1
        self.opens += 1


@dataclass
class Breakers:
    """One breaker per primary base URL, made on first use with the same settings."""

    failures: int
    cooldown_s: float
    clock: Callable[[], float] = time.monotonic
    _by_url: dict[str, Breaker] = field(default_factory=dict)

    def __getitem__(self, base_url: str) -> Breaker:
        b = self._by_url.get(base_url)
        if b is None:
            b = self._by_url[base_url] = Breaker(self.failures, self.cooldown_s, self.clock)
        return b

    def __iter__(self) -> Iterator[tuple[str, Breaker]]:
        return iter(sorted(self._by_url.items()))
