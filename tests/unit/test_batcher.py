from workers.router.batcher import Batcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_flushes_on_size() -> None:
    b: Batcher[int] = Batcher(3, 1.0, FakeClock())
    b.extend([1, 2])
    assert not b.ready()
    assert b.room() == 1
    b.add(3)
    assert b.ready()
    assert b.take() == [1, 2, 3]
    assert len(b) == 0 and b.time_left() is None


def test_flushes_on_wait_from_first_item() -> None:
    clock = FakeClock()
    b: Batcher[str] = Batcher(10, 0.05, clock)
    assert b.time_left() is None and not b.ready()
    b.add("a")
    clock.now += 0.03
    b.add("b")
    assert abs((b.time_left() or 0) - 0.02) < 1e-9
    assert not b.ready()
    clock.now += 0.021
    assert b.ready()
    assert b.take() == ["a", "b"]


def test_take_keeps_overflow_waiting_from_its_own_arrival() -> None:
    clock = FakeClock()
    b: Batcher[int] = Batcher(2, 1.0, clock)
    b.extend([1, 2, 3])
    assert b.room() == 0
    assert b.take() == [1, 2]
    assert len(b) == 1 and not b.ready()
    clock.now += 0.5
    assert abs((b.time_left() or 0) - 0.5) < 1e-9
    clock.now += 0.5
    assert b.ready() and b.take() == [3]


def test_discard_drops_revoked_items() -> None:
    b: Batcher[tuple[int, int]] = Batcher(10, 1.0, FakeClock())
    b.extend([(0, 1), (1, 2), (0, 3)])
    assert b.discard(lambda item: item[0] != 0) == 2
    assert b.take() == [(1, 2)]
    b.add((1, 3))
    assert b.discard(lambda item: False) == 1
    assert b.time_left() is None


def test_overflow_keeps_the_wait_it_already_did() -> None:
    clock = FakeClock()
    b: Batcher[int] = Batcher(2, 1.0, clock)
    b.add(1)
    clock.now += 0.6
    b.extend([2, 3])  # 3 arrives 0.6 s after 1
    clock.now += 0.3
    assert b.take() == [1, 2]
    assert abs((b.time_left() or 0) - 0.7) < 1e-9  # 3 has waited 0.3 s, not 0
    clock.now += 0.7
    assert b.ready() and b.take() == [3]


def test_idle_consumer_takes_a_partial_batch_at_once() -> None:
    clock = FakeClock()
    b: Batcher[int] = Batcher(8, 5.0, clock)
    assert not b.ready(idle=True)  # nothing to take
    b.add(1)
    assert not b.ready() and b.ready(idle=True)
    assert b.take() == [1]
