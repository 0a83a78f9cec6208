"""Which offsets may be committed when messages finish out of order (pure, no I/O).

A partition's committable offset is one past the highest offset below which everything is done:
a message still in flight holds back every later one of its partition.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    def __init__(self) -> None:
        self._pending: dict[P, set[int]] = {}
        self._highest: dict[P, int] = {}
        self._committed: dict[P, int] = {}

    def begin(self, part: P, offset: int) -> None:
        # the first offset seen is where the group's committed position already stands
        self._committed.setdefault(part, offset)
        self._pending.setdefault(part, set()).add(offset)
        self._highest[part] = max(self._highest.get(part, -1), offset)

    def done(self, part: P, offset: int) -> None:
        self._pending.get(part, set()).discard(offset)

    def in_flight(self, part: P | None = None) -> int:
        if part is not None:
            return len(self._pending.get(part, ()))
        return sum(len(s) for s in self._pending.values())

    def committable(self) -> dict[P, int]:
        """Offsets to commit now (only partitions that moved since ``mark_committed``)."""
        out: dict[P, int] = {}
        for part, highest in self._highest.items():
            pending = self._pending.get(part)
            nxt = min(pending) if pending else highest + 1
            if nxt > self._committed.get(part, -1):
                out[part] = nxt
        return out

    def mark_committed(self, offsets: dict[P, int]) -> None:
        for part, offset in offsets.items():
            self._committed[part] = max(self._committed.get(part, -1), offset)

    def forget(self, parts: set[P]) -> None:
        """Drop state of partitions this worker no longer owns."""
        for part in parts:
            self._pending.pop(part, None)
            self._highest.pop(part, None)
            self._committed.pop(part, None)
