"""A job cancelled while it is being published: the submitter stops quietly (no failure recorded, no error) and
returns the job in its state; ``thinkroute status`` prints what was stopped and what is still in flight."""

from __future__ import annotations

import pytest

from schemas.records import JobMeta, JobTotals, RouteTotals
from tests.unit.test_submit_integrity import SIX, FakeProducer, FakeStore
from workers.cli import console
from workers.store.jobstore import ROUTES
from workers.submit import jobs
from workers.submit.jobs import submit, summary


class CancelledStore(FakeStore):
    """Its job is cancelled (``state``) at the first lease renewal."""

    def __init__(self, state: str = "cancelled", in_flight: int = 0, stopped: int = 0) -> None:
        super().__init__(renew=False)
        self.state, self.in_flight, self.stopped = state, in_flight, stopped

    async def renew_lease(self, job_id: str) -> bool:
        self.calls.append(("renew", job_id))
        assert self.meta is not None
        self.meta = self.meta.model_copy(update={"state": self.state, "stop": "cancelled"})
        return False

    async def totals(self, job_id: str) -> JobTotals:
        routes = {r: RouteTotals() for r in ROUTES}
        return JobTotals(completed=1, stopped=self.stopped, in_flight=self.in_flight, routes=routes)

    async def settle_overdue(self, job_id: str) -> str | None:
        self.calls.append(("settle", job_id))
        return None


@pytest.mark.parametrize("state", ["stopping", "cancelled"])
async def test_a_job_cancelled_while_publishing_stops_quietly(monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    monkeypatch.setattr(jobs, "LEASE_S", 0.0)  # renew after every send
    store, producer = CancelledStore(state), FakeProducer()
    meta = await submit(producer, store, "p", SIX, "f", job_id="job-c")  # type: ignore[arg-type]
    assert meta.state == state and meta.total == 6
    assert len(producer.sent) == 1  # the first renewal found it cancelled: nothing more was sent
    assert "fail" not in store.names() and "start" not in store.names()


async def test_status_of_a_stopping_job_counts_stopped_and_in_flight(capsys: pytest.CaptureFixture[str]) -> None:
    store = CancelledStore(in_flight=2, stopped=3)
    store.meta = JobMeta(job_id="job-s", total=6, source="f", submitted_at=1.0, state="stopping", stop="cancelled")
    s = await summary(store, store.meta)  # type: ignore[arg-type]
    assert (s["state"], s["completed"], s["stopped"], s["in_flight"], s["pending"]) == ("stopping", 1, 3, 2, 2)
    assert store.names() == ["settle"]  # a stopping job past its deadline would be settled here
    console.print_summary(s, as_json=False)
    printed = capsys.readouterr().out
    assert "1 completed, 0 failed, 3 stopped, 2 pending of 6" in printed and "(stopping)" in printed
    assert "cancelled: 3 requests not run (stopped by the cancel); waiting for 2 answers in flight" in printed
