"""Micro-batching: flush on size, on a short wait, or at once while the consumer of batches is idle.

Pure: no I/O, the clock is injected. The third rule makes batching self-clocking (as a dynamic batcher
does): under light load a prompt does not wait out ``max_wait_s`` for company while the classifier has a free
slot, and under load batches grow up to ``max_size`` while the classifier is busy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items; a batch is due when it holds ``max_size`` items or its oldest is ``max_wait_s`` old."""

    def __init__(self, max_size: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._items: list[T] = []
        self._added: list[float] = []  # when each item came, in order
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        now = self._clock()
        if not self._items:
            self._first_at = now
        self._items.append(item)
        self._added.append(now)

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.add(item)

    def room(self) -> int:
        """How many items fit before the batch is full (never below 0)."""
        return max(self.max_size - len(self._items), 0)

    def time_left(self) -> float | None:
        """Seconds until the batch is due by age; None when empty, 0 when already due."""
        if self._first_at is None:
            return None
        return max(self.max_wait_s - (self._clock() - self._first_at), 0.0)

    def ready(self, idle: bool = False) -> bool:
        """A batch is due: full, or its oldest item waited ``max_wait_s``, or (``idle``) someone is free to take it."""
        if not self._items:
            return False
        return idle or len(self._items) >= self.max_size or self.time_left() == 0.0

    def take(self) -> list[T]:
        """Remove and return the oldest batch (at most ``max_size`` items); the rest start a new wait."""
        batch, self._items = self._items[: self.max_size], self._items[self.max_size :]
        self._added = self._added[self.max_size :]
        self._first_at = self._added[0] if self._added else None  # the rest keep the wait they already did
        return batch

    def discard(self, keep: Callable[[T], bool]) -> int:
        """Drop items for which ``keep`` is false (e.g. records of revoked partitions); returns how many."""
        before = len(self._items)
        kept = [(item, at) for item, at in zip(self._items, self._added, strict=True) if keep(item)]
        self._items = [item for item, _ in kept]
        self._added = [at for _, at in kept]
        self._first_at = self._added[0] if self._added else None
        return before - len(self._items)
