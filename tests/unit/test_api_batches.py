"""``/v1/batches`` on fakes: create (the record, the window, metadata limits, the plan asked, the input file's
checks), request body errors naming their field, owners isolated, pages of the list, and cancel (409 past it)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.records import BatchInfo, JobMeta, JobState
from tests.unit.api_fakes import Api, auth, file_record, make_api
from workers.api.intakes import STOPPED
from workers.router.plan import Budget, PlanArgs

NOW = 5000.0
FILE = "file-" + "1" * 24


@pytest.fixture
def api() -> Iterator[Api]:
    for a in make_api(clock=lambda: NOW, completion_windows=["24h", "3s"], max_body_bytes=4096):
        a.index.records[FILE] = file_record(file_id=FILE)
        yield a


def create(api: Api, owner: str = "alice", **kw: Any) -> Any:
    body = {"input_file_id": FILE, "endpoint": "/v1/chat/completions", "completion_window": "24h"} | kw
    return api.client.post("/v1/batches", headers=auth(owner), json=body)


def batch(job_id: str, state: JobState = "running", owner: str = "alice", **kw: Any) -> JobMeta:
    info = BatchInfo(input_file_id=FILE)
    return JobMeta(
        job_id=job_id, total=4, source="in.jsonl", submitted_at=NOW, state=state, owner=owner, batch=info, **kw
    )


def test_create_records_a_validating_batch_and_starts_its_intake(api: Api) -> None:
    r = create(api, metadata={"team": "x"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert re.fullmatch(r"batch_[0-9a-f]{24}", b["id"])
    assert (b["status"], b["object"], b["input_file_id"], b["endpoint"]) == (
        "validating",
        "batch",
        FILE,
        "/v1/chat/completions",
    )
    assert (b["created_at"], b["expires_at"], b["completion_window"]) == (5000, 5000 + 86400, "24h")
    assert b["request_counts"] == {"total": 0, "completed": 0, "failed": 0} and b["metadata"] == {"team": "x"}
    meta = api.store.metas[b["id"]]
    assert (meta.state, meta.owner, meta.total, meta.source, meta.submitted_at) == (
        "validating",
        "alice",
        0,
        "in.jsonl",
        NOW,
    )
    assert meta.batch == BatchInfo(input_file_id=FILE, completion_window="24h", metadata={"team": "x"})
    assert meta.expires_at == NOW + 86400
    assert api.store.named("create_batch") == [("create_batch", b["id"], 60.0)]
    assert [(j, f.id, p) for j, f, p in api.intakes.started] == [(b["id"], FILE, None)]
    assert api.planners.asked == [None]


def test_a_short_window_when_configured(api: Api) -> None:
    b = create(api, completion_window="3s").json()
    assert b["expires_at"] == 5003 and api.store.metas[b["id"]].expires_at == NOW + 3
    r = create(api, completion_window="1h")
    assert r.status_code == 400 and r.json()["error"]["param"] == "completion_window"
    assert "24h, 3s" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [
        ({f"k{i}": "v" for i in range(16)}, True),
        ({f"k{i}": "v" for i in range(17)}, False),
        ({"k" * 64: "v"}, True),
        ({"k" * 65: "v"}, False),
        ({"k": "v" * 512}, True),
        ({"k": "v" * 513}, False),
    ],
)
def test_metadata_limits(api: Api, metadata: dict[str, str], ok: bool) -> None:
    r = create(api, metadata=metadata)
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.json()["error"]["param"] == "metadata"
        assert api.store.metas == {} and api.intakes.started == []


@pytest.mark.parametrize(
    ("metadata", "asked"),
    [
        ({"thinkroute_reasoning_share": "0.3"}, PlanArgs(Budget("share", 0.3))),
        ({"thinkroute_reasoning_tokens": "9000"}, PlanArgs(Budget("tokens", 9000.0))),
        ({"thinkroute_explore": "0.1", "thinkroute_explore_seed": "7"}, PlanArgs(None, 0.1, 7)),
        ({"thinkroute_reasoning_share": "1", "thinkroute_explore": "0.5"}, PlanArgs(Budget("share", 1.0), 0.5)),
        ({"other": "1"}, None),
    ],
)
def test_the_plan_asked_by_the_metadata(api: Api, metadata: dict[str, str], asked: PlanArgs | None) -> None:
    r = create(api, metadata=metadata)
    assert r.status_code == 200, r.text
    assert api.planners.asked == [asked]
    assert api.intakes.started[0][2] == (None if asked is None else ("planner", asked))


@pytest.mark.parametrize(
    "metadata",
    [
        {"thinkroute_reasoning_share": "0.3", "thinkroute_reasoning_tokens": "10"},
        {"thinkroute_reasoning_share": "1.5"},
        {"thinkroute_reasoning_tokens": "-1"},
        {"thinkroute_reasoning_share": "lots"},
        {"thinkroute_explore": "2"},
        {"thinkroute_explore": "nan"},
        {"thinkroute_explore_seed": "x"},
    ],
)
def test_a_bad_plan_in_the_metadata_is_400(api: Api, metadata: dict[str, str]) -> None:
    r = create(api, metadata=metadata)
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata", r.text
    assert api.store.metas == {}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (
            {"endpoint": "/v1/chat/completions", "completion_window": "24h"},
            "input_file_id",
            "missing_required_parameter",
        ),
        (
            {"input_file_id": FILE, "endpoint": "/v1/embeddings", "completion_window": "24h"},
            "endpoint",
            "invalid_value",
        ),
        (
            {"input_file_id": FILE, "endpoint": "/v1/chat/completions", "completion_window": "24h", "x": 1},
            "x",
            "unknown_parameter",
        ),
        (
            {
                "input_file_id": FILE,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"a": 1},
            },
            "metadata.a",
            "invalid_value",
        ),
    ],
)
def test_body_errors_name_their_field(api: Api, body: dict[str, Any], param: str, code: str) -> None:
    r = api.client.post("/v1/batches", headers=auth(), json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_a_body_that_is_not_a_json_object_is_400(api: Api, raw: bytes) -> None:
    r = api.client.post("/v1/batches", headers=auth() | {"Content-Type": "application/json"}, content=raw)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_a_body_past_max_body_bytes_is_413(api: Api) -> None:
    r = create(api, metadata={"k": "v" * 500}, padding="x" * 5000)
    assert r.status_code == 413 and api.store.metas == {}

    def chunks() -> Iterator[bytes]:
        yield json.dumps({"input_file_id": FILE}).encode()[:-1] + b', "x": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = api.client.post("/v1/batches", headers=auth() | {"Content-Type": "application/json"}, content=chunks())
    assert r.status_code == 413


def test_the_input_file_must_be_the_callers_batch_file(api: Api) -> None:
    api.index.records["file-bob"] = file_record(owner="bob", file_id="file-bob")
    api.index.records["file-out"] = file_record(file_id="file-out", purpose="batch_output", kind="output")
    for file_id in ("file-bob", "file-none"):
        r = create(api, input_file_id=file_id)
        assert r.status_code == 404
        assert r.json()["error"] == {
            "message": f"No such File object: {file_id}",
            "type": "invalid_request_error",
            "param": "input_file_id",
            "code": None,
        }
    r = create(api, input_file_id="file-out")
    assert r.status_code == 400 and r.json()["error"]["param"] == "input_file_id"
    assert api.store.metas == {}


def test_no_new_batch_while_the_server_stops(api: Api) -> None:
    api.intakes.accepting = False
    r = create(api)
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
    assert api.store.metas == {}


def test_a_batch_recorded_as_the_server_stops_is_failed(api: Api) -> None:
    api.intakes.stop_on_start = True
    r = create(api)
    assert r.status_code == 503
    (meta,) = api.store.metas.values()
    assert (meta.state, meta.failed_reason) == ("failed", STOPPED)


def test_another_owners_batch_is_404_exactly_as_a_missing_one(api: Api) -> None:
    api.store.put(batch("batch_bob", owner="bob"))
    api.store.put(JobMeta(job_id="job-cli", total=1, source="f", submitted_at=NOW))  # a CLI job: no owner
    for job_id in ("batch_bob", "batch_none", "job-cli"):
        for method, path in [("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel")]:
            r = api.client.request(method, path.format(job_id), headers=auth("alice"))
            assert r.status_code == 404
            assert r.json()["error"] == {
                "message": f"No batch found with id '{job_id}'.",
                "type": "invalid_request_error",
                "param": "batch_id",
                "code": None,
            }
    assert api.store.named("stop_job") == []
    assert api.client.get("/v1/batches", headers=auth("alice")).json()["data"] == []
    assert [b["id"] for b in api.client.get("/v1/batches", headers=auth("bob")).json()["data"]] == ["batch_bob"]


def test_pages_of_the_batch_list_newest_first(api: Api) -> None:
    for i in range(5):
        api.store.put(batch(f"batch_{i}"))
    page = api.client.get("/v1/batches", headers=auth(), params={"limit": 2}).json()
    assert [b["id"] for b in page["data"]] == ["batch_4", "batch_3"]
    assert (page["first_id"], page["last_id"], page["has_more"]) == ("batch_4", "batch_3", True)
    page = api.client.get("/v1/batches", headers=auth(), params={"limit": 2, "after": "batch_3"}).json()
    assert [b["id"] for b in page["data"]] == ["batch_2", "batch_1"] and page["has_more"] is True
    page = api.client.get("/v1/batches", headers=auth(), params={"limit": 2, "after": "batch_1"}).json()
    assert [b["id"] for b in page["data"]] == ["batch_0"] and page["has_more"] is False
    assert len(api.client.get("/v1/batches", headers=auth()).json()["data"]) == 5  # list_limit 20
    unknown = api.client.get("/v1/batches", headers=auth(), params={"after": "batch_x"}).json()
    assert (unknown["data"], unknown["has_more"]) == ([], False)
    for bad in (0, 101, "x"):
        r = api.client.get("/v1/batches", headers=auth(), params={"limit": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


@pytest.mark.parametrize(
    ("state", "after"), [("validating", "cancelling"), ("submitting", "cancelling"), ("running", "cancelling")]
)
def test_cancel_a_batch_in_progress(api: Api, state: JobState, after: str) -> None:
    api.store.put(batch("batch_1", state))
    r = api.client.post("/v1/batches/batch_1/cancel", headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == after and r.json()["cancelling_at"] is not None
    assert api.store.named("stop_job") == [("stop_job", "batch_1", "cancelled", 300.0, False)]


@pytest.mark.parametrize(
    ("state", "stop", "finalized"),
    [
        ("stopping", "cancelled", False),
        ("running", "cancelled", False),
        ("cancelled", "cancelled", False),
        ("cancelled", "cancelled", True),
    ],
)
def test_cancel_again_answers_the_batch_as_it_is(api: Api, state: JobState, stop: Any, finalized: bool) -> None:
    api.store.put(batch("batch_1", state, stop=stop, stop_at=NOW, finalized_at=NOW if finalized else None))
    r = api.client.post("/v1/batches/batch_1/cancel", headers=auth())
    assert r.status_code == 200 and r.json()["status"] == ("cancelled" if finalized else "cancelling")
    assert api.store.named("stop_job") == []


@pytest.mark.parametrize(
    ("state", "stop", "finalized", "status"),
    [
        ("done", None, True, "completed"),
        ("done", None, False, "finalizing"),
        ("failed", None, False, "failed"),
        ("expired", "expired", True, "expired"),
        ("expired", "expired", False, "finalizing"),
        ("stopping", "expired", False, "finalizing"),
        ("running", "expired", False, "finalizing"),
    ],
)
def test_cancel_past_it_is_409(api: Api, state: JobState, stop: Any, finalized: bool, status: str) -> None:
    api.store.put(batch("batch_1", state, stop=stop, finalized_at=NOW if finalized else None))
    r = api.client.post("/v1/batches/batch_1/cancel", headers=auth())
    assert r.status_code == 409
    assert r.json()["error"] == {
        "message": f"Cannot cancel a batch with status {status}.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert api.store.named("stop_job") == []


def test_retrieve_renders_the_counters(api: Api) -> None:
    from schemas.records import JobTotals

    api.store.put(
        batch("batch_1", "running", started_at=NOW + 1), JobTotals(completed=2, failed=1, stopped=0, in_flight=1)
    )
    b = api.client.get("/v1/batches/batch_1", headers=auth()).json()
    assert (b["status"], b["in_progress_at"]) == ("in_progress", 5001)
    assert b["request_counts"] == {"total": 4, "completed": 2, "failed": 1}
    assert b["thinkroute"]["in_flight"] == 1
