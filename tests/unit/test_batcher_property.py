"""The router's Batcher under any sequence of extend/take/discard and clock advances (hypothesis, stateful).

Times are multiples of 1/8 s, exact in binary floating point, so "waited exactly ``max_wait_s``" is reached
and checked rather than skipped over by rounding. Every item is a distinct int, in the order it was added.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from workers.router.batcher import Batcher

TICK = 0.125


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class BatcherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.waiting: list[tuple[int, float]] = []  # the model: (item, arrival), oldest first
        self.added: list[int] = []
        self.taken: list[int] = []
        self.discarded: list[int] = []
        self.next_item = 0

    @initialize(max_size=st.integers(1, 8), wait_ticks=st.integers(0, 8))
    def start(self, max_size: int, wait_ticks: int) -> None:
        self.max_size = max_size
        self.max_wait_s = wait_ticks * TICK
        self.batcher: Batcher[int] = Batcher(max_size, self.max_wait_s, self.clock)

    @rule(n=st.integers(0, 12))
    def extend(self, n: int) -> None:
        items = list(range(self.next_item, self.next_item + n))
        self.next_item += n
        self.batcher.extend(items)
        self.waiting += [(i, self.clock.now) for i in items]
        self.added += items

    @rule(ticks=st.integers(0, 12))
    def advance(self, ticks: int) -> None:
        self.clock.now += ticks * TICK

    @rule()
    def take(self) -> None:
        batch = self.batcher.take()
        assert len(batch) <= self.max_size
        expected, self.waiting = self.waiting[: self.max_size], self.waiting[self.max_size :]
        assert batch == [i for i, _ in expected], "take() returns the oldest items, in order"
        self.taken += batch

    @precondition(lambda self: bool(self.waiting))
    @rule(modulus=st.integers(1, 4), residue=st.integers(0, 3))
    def discard(self, modulus: int, residue: int) -> None:
        def keep(i: int) -> bool:
            return i % modulus != residue

        dropped = [i for i, _ in self.waiting if not keep(i)]
        assert self.batcher.discard(keep) == len(dropped)
        self.waiting = [(i, at) for i, at in self.waiting if keep(i)]
        self.discarded += dropped

    @precondition(lambda self: bool(self.waiting))
    @rule()
    def take_when_ready(self) -> None:
        """What the router does: take only a due batch; a full one is always due."""
        if len(self.waiting) >= self.max_size:
            assert self.batcher.ready()
        if self.batcher.ready():
            self.take()

    @invariant()
    def nothing_lost_duplicated_or_reordered(self) -> None:
        held = [i for i, _ in self.waiting]
        assert len(self.batcher) == len(held)
        assert sorted(self.taken + self.discarded + held) == self.added, "each item exactly once"
        assert self.taken + held == [i for i in self.added if i not in set(self.discarded)], "order kept"

    @invariant()
    def ready_means_full_or_waited_or_idle(self) -> None:
        assert self.batcher.room() == max(self.max_size - len(self.waiting), 0)
        if not self.waiting:
            assert not self.batcher.ready() and not self.batcher.ready(idle=True)
            assert self.batcher.time_left() is None
            return
        waited = self.clock.now - self.waiting[0][1]  # the oldest item's wait, overflow included
        full = len(self.waiting) >= self.max_size
        assert self.batcher.time_left() == max(self.max_wait_s - waited, 0.0)
        assert self.batcher.ready() == (full or waited >= self.max_wait_s)
        assert self.batcher.ready(idle=True), "an idle consumer takes any non-empty batch"


TestBatcher = BatcherMachine.TestCase
TestBatcher.settings = settings(max_examples=150, stateful_step_count=40, deadline=None, database=None)
