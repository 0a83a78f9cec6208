"""The batch object from a job's record and counters: the status for every (state, stop, finalized), the
timestamps each status carries, request counts and usage, the ThinkRoute figures, and the official SDK
reading the result."""

from __future__ import annotations

from typing import Any, get_args

import openai.types
import pytest

from schemas.records import BatchInfo, JobMeta, JobPlan, JobState, JobTotals, LineError, RouteTotals
from workers.api.render import batch_status, render_batch

STATES: tuple[JobState, ...] = get_args(JobState)
STOPS = (None, "cancelled", "expired")

# (state, stop) -> (status before the files are written, status after)
EXPECTED: dict[tuple[str, str | None], tuple[str, str]] = {
    ("validating", None): ("validating", "validating"),
    ("validating", "cancelled"): ("cancelling", "cancelling"),
    ("validating", "expired"): ("validating", "validating"),
    ("submitting", None): ("in_progress", "in_progress"),
    ("submitting", "cancelled"): ("cancelling", "cancelling"),
    ("submitting", "expired"): ("finalizing", "finalizing"),
    ("running", None): ("in_progress", "in_progress"),
    ("running", "cancelled"): ("cancelling", "cancelling"),
    ("running", "expired"): ("finalizing", "finalizing"),
    ("stopping", None): ("cancelling", "cancelling"),
    ("stopping", "cancelled"): ("cancelling", "cancelling"),
    ("stopping", "expired"): ("finalizing", "finalizing"),
    ("failed", None): ("failed", "failed"),
    ("failed", "cancelled"): ("failed", "failed"),
    ("failed", "expired"): ("failed", "failed"),
    ("done", None): ("finalizing", "completed"),
    ("done", "cancelled"): ("finalizing", "completed"),
    ("done", "expired"): ("finalizing", "completed"),
    ("cancelled", None): ("cancelling", "cancelled"),
    ("cancelled", "cancelled"): ("cancelling", "cancelled"),
    ("cancelled", "expired"): ("cancelling", "cancelled"),
    ("expired", None): ("finalizing", "expired"),
    ("expired", "cancelled"): ("finalizing", "expired"),
    ("expired", "expired"): ("finalizing", "expired"),
}


def meta(state: JobState = "running", **kw: Any) -> JobMeta:
    fields: dict[str, Any] = dict(
        job_id="batch_" + "a" * 24,
        total=10,
        source="in.jsonl",
        submitted_at=1000.7,
        state=state,
        owner="alice",
        batch=BatchInfo(input_file_id="file-x", completion_window="24h", metadata={"k": "v"}),
        expires_at=1000.7 + 86400,
    )
    return JobMeta(**(fields | kw))


def test_the_table_covers_every_state_and_stop() -> None:
    assert set(EXPECTED) == {(s, stop) for s in STATES for stop in STOPS}


@pytest.mark.parametrize(("state", "stop"), list(EXPECTED))
@pytest.mark.parametrize("finalized", [False, True])
def test_status_of_every_state_stop_and_finalized(state: JobState, stop: Any, finalized: bool) -> None:
    m = meta(state, stop=stop, finalized_at=2000.0 if finalized else None)
    assert batch_status(m) == EXPECTED[state, stop][finalized]
    assert render_batch(m, JobTotals()).status == EXPECTED[state, stop][finalized]


def totals() -> JobTotals:
    return JobTotals(
        completed=6,
        failed=1,
        stopped=3,
        in_flight=0,
        routes={
            "reasoning": RouteTotals(
                requests=3, completed=3, prompt_tokens=30, completion_tokens=300, reasoning_tokens=250
            ),
            "direct": RouteTotals(requests=4, completed=3, failed=1, prompt_tokens=40, completion_tokens=20),
        },
        escalations=RouteTotals(requests=1, completed=1, prompt_tokens=10, completion_tokens=5),
        exploration={"reasoning": RouteTotals(requests=1, completed=1, prompt_tokens=9, completion_tokens=99)},
    )


def test_a_completed_batch_field_by_field() -> None:
    m = meta(
        "done",
        started_at=1001.2,
        settled_at=1500.9,
        finalized_at=1502.1,
        output_file_id="file-o",
        error_file_id="file-e",
    )
    b = render_batch(m, totals(), {"savings": None, "savings_hint": "h"}).model_dump()
    assert b["status"] == "completed"
    assert (b["created_at"], b["in_progress_at"], b["finalizing_at"], b["completed_at"]) == (1000, 1001, 1500, 1502)
    assert b["expires_at"] == 87400
    assert [b[k] for k in ("failed_at", "expired_at", "cancelling_at", "cancelled_at", "errors")] == [None] * 5
    assert (b["output_file_id"], b["error_file_id"], b["input_file_id"]) == ("file-o", "file-e", "file-x")
    assert b["request_counts"] == {"total": 10, "completed": 6, "failed": 1}
    assert b["usage"] == {
        "input_tokens": 80,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 325,
        "output_tokens_details": {"reasoning_tokens": 250},
        "total_tokens": 405,
    }
    tr = b["thinkroute"]
    assert (tr["state"], tr["stopped"], tr["in_flight"], tr["escalations"]) == ("done", 3, 0, 1)
    assert tr["routes"] == {"direct": 4, "reasoning": 3}
    assert tr["tokens_by_route"]["reasoning"] == {
        "prompt": 30,
        "completion": 300,
        "reasoning": 250,
        "completed": 3,
        "failed": 0,
    }
    assert tr["exploration"]["routes"]["reasoning"]["completion"] == 99  # never in usage
    assert (tr["savings"], tr["savings_hint"], tr["plan"]) == (None, "h", None)
    assert b["metadata"] == {"k": "v"} and b["endpoint"] == "/v1/chat/completions"


def test_cancelled_expired_and_failed_timestamps() -> None:
    c = render_batch(meta("cancelled", stop="cancelled", stop_at=1100.0, finalized_at=1200.0), JobTotals())
    assert (c.status, c.cancelling_at, c.cancelled_at, c.completed_at, c.expired_at) == (
        "cancelled",
        1100,
        1200,
        None,
        None,
    )
    cancelling = render_batch(meta("stopping", stop="cancelled", stop_at=1100.0), JobTotals())
    assert (cancelling.status, cancelling.cancelling_at, cancelling.cancelled_at) == ("cancelling", 1100, None)
    e = render_batch(meta("expired", stop="expired", stop_at=1300.0, finalized_at=1301.0), JobTotals())
    assert (e.status, e.expired_at, e.cancelling_at, e.finalizing_at) == ("expired", 1300, None, None)
    pending = render_batch(meta("expired", stop="expired", stop_at=1300.0), JobTotals())
    assert (pending.status, pending.expired_at) == ("finalizing", None)
    f = render_batch(meta("failed", failed_at=1050.0, failed_reason="2 bad lines"), JobTotals())
    assert (f.status, f.failed_at) == ("failed", 1050)


def test_a_failed_batch_carries_its_line_errors() -> None:
    errors = [
        LineError(code="invalid_json_line", message="not JSON", line=3),
        LineError(code="duplicate_custom_id", message="dup", line=7, param="custom_id"),
    ]
    b = render_batch(meta("failed", errors=errors, failed_reason="2 errors"), JobTotals())
    assert b.errors is not None and b.errors.object == "list"
    assert [(e.code, e.line, e.param) for e in b.errors.data] == [
        ("invalid_json_line", 3, None),
        ("duplicate_custom_id", 7, "custom_id"),
    ]
    bare = render_batch(meta("failed", failed_reason="lease expired"), JobTotals())
    assert bare.errors is not None and [(e.code, e.message) for e in bare.errors.data] == [
        ("batch_failed", "lease expired")
    ]
    assert render_batch(meta("running"), JobTotals()).errors is None


def test_the_plan_is_summarised() -> None:
    plan = JobPlan(budget="share=0.3", planned_reasoning=3, explore=0.1, explore_total=1)
    tr = render_batch(meta("running", plan=plan), totals()).thinkroute
    assert tr is not None and tr["plan"]["planned"]["reasoning"] == 3 and tr["plan"]["budget"] == "share=0.3"
    assert tr["exploration"]["total"] == 1 and tr["exploration"]["pending"] == 0


@pytest.mark.parametrize("state", STATES)
def test_the_official_sdk_reads_every_status(state: JobState) -> None:
    b = render_batch(meta(state, stop="cancelled" if state == "stopping" else None, finalized_at=2000.0), totals())
    parsed = openai.types.Batch.model_validate_json(b.model_dump_json())
    assert parsed.status == b.status and parsed.id == b.id
    assert parsed.request_counts is not None and parsed.request_counts.completed == 6
    assert parsed.model_extra is not None and parsed.model_extra["thinkroute"]["state"] == state
