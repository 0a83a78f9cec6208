from workers.kafka.offsets import OffsetTracker


def test_commit_waits_for_the_oldest_in_flight() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for o in (10, 11, 12):
        t.begin("p0", o)
    t.done("p0", 11)
    t.done("p0", 12)
    assert t.committable() == {}  # 10 still in flight: nothing past it (10 is where we started)
    t.done("p0", 10)
    assert t.committable() == {"p0": 13}
    t.mark_committed({"p0": 13})
    assert t.committable() == {}
    assert t.in_flight() == 0


def test_partitions_are_independent_and_forgettable() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    t.begin("a", 0)
    t.begin("b", 5)
    t.done("b", 5)
    assert t.committable() == {"b": 6}
    t.mark_committed({"b": 6})
    assert t.in_flight("a") == 1 and t.in_flight("b") == 0
    t.forget({"a"})
    assert t.committable() == {}
