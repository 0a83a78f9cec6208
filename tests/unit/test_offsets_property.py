"""OffsetTracker under any completion order (hypothesis, stateful).

Begins come in increasing offsets per partition, as a consumer fetches them (gaps allowed: compacted
records, transaction markers); dones come in any order; commits happen whenever, and may fail (then the
position is not marked); a partition may be revoked (forget) and later assigned again. A plain model of
the same history says what must be committable; the tracker must agree with it at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from workers.kafka.offsets import OffsetTracker

PARTITIONS = ("p0", "p1", "p2")


@dataclass
class PartitionModel:
    committed: int  # the group's position: the first offset seen, then whatever was committed
    next_offset: int
    begun: list[int] = field(default_factory=list)
    in_flight: set[int] = field(default_factory=set)
    reported: int = -1  # the highest committable offset the tracker reported since the partition came

    def position(self) -> int:
        """One past the highest offset below which every begun offset is done."""
        return min(self.in_flight) if self.in_flight else self.begun[-1] + 1


class OffsetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tracker: OffsetTracker[str] = OffsetTracker()
        self.model: dict[str, PartitionModel] = {}

    @rule(part=st.sampled_from(PARTITIONS), start=st.integers(0, 1_000), gap=st.integers(1, 3))
    def begin(self, part: str, start: int, gap: int) -> None:
        m = self.model.get(part)
        if m is None:  # a partition arrives: fetching starts at the group's committed position
            m = self.model[part] = PartitionModel(committed=start, next_offset=start)
        offset = m.next_offset
        self.tracker.begin(part, offset)
        m.begun.append(offset)
        m.in_flight.add(offset)
        m.next_offset = offset + gap

    @precondition(lambda self: any(m.in_flight for m in self.model.values()))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        part = data.draw(st.sampled_from(sorted(p for p, m in self.model.items() if m.in_flight)))
        offset = data.draw(st.sampled_from(sorted(self.model[part].in_flight)))
        self.tracker.done(part, offset)
        self.model[part].in_flight.discard(offset)

    @rule(succeeds=st.booleans())
    def commit(self, succeeds: bool) -> None:
        offsets = self.tracker.committable()
        for part, offset in offsets.items():
            m = self.model[part]
            assert offset > m.committed, "only partitions that moved are committed"
            assert all(o >= offset for o in m.in_flight), f"{part}: {offset} passes an offset still in flight"
            assert all(o not in m.in_flight for o in m.begun if o < offset)
        if succeeds:
            self.tracker.mark_committed(offsets)
            for part, offset in offsets.items():
                self.model[part].committed = offset
            assert all(p not in self.tracker.committable() for p in offsets), "a committed position is reported again"

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        part = data.draw(st.sampled_from(sorted(self.model)))
        self.tracker.forget({part})
        del self.model[part]

    @invariant()
    def agrees_with_the_model(self) -> None:
        expected = {p: m.position() for p, m in self.model.items() if m.position() > m.committed}
        assert self.tracker.committable() == expected
        assert self.tracker.in_flight() == sum(len(m.in_flight) for m in self.model.values())
        for part, m in self.model.items():
            assert self.tracker.in_flight(part) == len(m.in_flight)

    @invariant()
    def committable_is_monotone(self) -> None:
        for part, offset in self.tracker.committable().items():
            m = self.model[part]
            assert offset >= m.reported, f"{part}: committable went back from {m.reported} to {offset}"
            m.reported = offset

    @invariant()
    def all_done_reaches_highest_plus_one(self) -> None:
        committable = self.tracker.committable()
        for part, m in self.model.items():
            if not m.in_flight:
                assert committable.get(part, m.committed) == m.begun[-1] + 1


TestOffsetTracker = OffsetMachine.TestCase
TestOffsetTracker.settings = settings(max_examples=150, stateful_step_count=40, deadline=None, database=None)
