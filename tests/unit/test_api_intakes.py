"""The background intakes (fakes): at most intake_concurrency at once, the lease renewed while a batch waits
for its turn, a failed intake failing its batch with a reason, and shutdown failing what did not finish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schemas.records import BatchInfo, JobMeta
from tests.helpers import until
from tests.unit.api_fakes import FakeStorage, FakeStore, file_record
from workers.api import intakes as intakes_module
from workers.api.intakes import BROKEN, STOPPED, Intakes, ShuttingDown
from workers.settings import ApiSettings, Settings


class FakeIntake:
    def __init__(self) -> None:
        self.running: set[str] = set()
        self.most = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()

    async def __call__(self, producer: Any, store: Any, storage: Any, s: Any, job_id: str, f: Any, p: Any) -> str:
        self.running.add(job_id)
        self.most = max(self.most, len(self.running))
        try:
            await self.gates.setdefault(job_id, asyncio.Event()).wait()
            if job_id in self.fail:
                raise RuntimeError("secret internals")
            return "running"
        finally:
            self.running.discard(job_id)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeIntake:
    f = FakeIntake()
    monkeypatch.setattr(intakes_module, "intake", f)
    return f


def make(store: FakeStore, n: int, lease_s: float = 60.0) -> Intakes:
    for i in range(n):
        store.put(
            JobMeta(
                job_id=f"b{i}",
                total=0,
                source="f",
                submitted_at=0,
                state="validating",
                owner="alice",
                batch=BatchInfo(input_file_id="file-x"),
            )
        )
    s = Settings(api=ApiSettings(intake_concurrency=2))
    return Intakes(None, store, FakeStorage(), s, lease_s=lease_s)  # type: ignore[arg-type]


async def test_at_most_intake_concurrency_at_once_and_failures_fail_the_batch(fake: FakeIntake) -> None:
    store = FakeStore()
    intakes = make(store, 4)
    fake.fail = {"b1"}
    for i in range(4):
        intakes.start(f"b{i}", file_record(), None)
    await until(lambda: len(fake.running) == 2)
    for i in range(4):
        fake.gates.setdefault(f"b{i}", asyncio.Event()).set()
    await until(lambda: intakes.running == [])
    assert fake.most == 2
    assert store.named("fail_validation") == [("fail_validation", "b1", BROKEN, [])]
    assert store.metas["b1"].failed_reason == BROKEN and "secret" not in BROKEN


async def test_a_waiting_batch_keeps_its_lease(fake: FakeIntake) -> None:
    store = FakeStore()
    intakes = make(store, 3, lease_s=0.2)
    for i in range(3):
        intakes.start(f"b{i}", file_record(), None)
    await until(lambda: len(store.named("renew_lease")) >= 2)
    assert {c[1] for c in store.named("renew_lease")} == {"b2"}  # only the one waiting for a turn
    store.metas["b2"] = store.metas["b2"].model_copy(update={"state": "cancelled"})
    await until(lambda: "b2" not in intakes.running)  # left validating: never started
    for g in ("b0", "b1"):
        fake.gates.setdefault(g, asyncio.Event()).set()
    await until(lambda: intakes.running == [])
    assert "b2" not in fake.gates


async def test_shutdown_fails_what_did_not_finish(fake: FakeIntake) -> None:
    store = FakeStore()
    intakes = make(store, 3)
    for i in range(3):
        intakes.start(f"b{i}", file_record(), None)
    await until(lambda: len(fake.running) == 2)
    fake.gates.setdefault("b0", asyncio.Event()).set()
    await intakes.close(grace_s=0.2)
    assert intakes.running == []
    # b0 finished (its turn then went to b2, still running at the deadline); b1 and b2 were failed
    assert sorted(c[1] for c in store.named("fail_validation")) == ["b1", "b2"]
    assert {store.metas[b].failed_reason for b in ("b1", "b2")} == {STOPPED}
    assert store.metas["b0"].state == "validating"
    with pytest.raises(ShuttingDown):
        intakes.start("b9", file_record(), None)
    assert not intakes.accepting
