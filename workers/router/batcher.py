"""Micro-batching: flush on size or on a short wait. Pure: no I/O, the clock is injected."""

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
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        if not self._items:
            self._first_at = self._clock()
        self._items.append(item)

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

    def ready(self) -> bool:
        if not self._items:
            return False
        return len(self._items) >= self.max_size or self.time_left() == 0.0

    def take(self) -> list[T]:
        """Remove and return the oldest batch (at most ``max_size`` items); the rest start a new wait."""
        batch, self._items = self._items[: self.max_size], self._items[self.max_size :]
        self._first_at = self._clock() if self._items else None
        return batch

    def discard(self, keep: Callable[[T], bool]) -> int:
        """Drop items for which ``keep`` is false (e.g. records of revoked partitions); returns how many."""
        before = len(self._items)
        self._items = [item for item in self._items if keep(item)]
        if not self._items:
            self._first_at = None
        return before - len(self._items)
