"""A route's unexpected error is a 500 in OpenAI's shape that tells nothing of it (it is logged with the
route), a Redis that does not answer a 503; the metrics count every answer by route template, never an id."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.unit.api_fakes import Api, auth, file_record, make_api
from workers.api.problems import INTERNAL_MESSAGE


@pytest.fixture
def api() -> Iterator[Api]:
    yield from make_api()


def test_an_unexpected_error_is_500_without_its_detail(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(file_id: str) -> None:
        raise RuntimeError("password=hunter2")

    api.index.get = broken  # type: ignore[assignment,method-assign]
    with caplog.at_level(logging.ERROR, logger="workers.api.middleware"):
        r = api.client.get("/v1/files/file-1", headers=auth())
    assert r.status_code == 500
    assert r.json() == {"error": {"message": INTERNAL_MESSAGE, "type": "server_error", "param": None, "code": None}}
    assert "hunter2" not in r.text
    assert any("GET /v1/files/{file_id} failed" in rec.getMessage() for rec in caplog.records)


def test_redis_away_is_503(api: Api) -> None:
    async def away(job_id: str) -> None:
        raise RedisConnectionError("Connection refused")

    api.store.job_meta = away  # type: ignore[assignment,method-assign]
    r = api.client.get("/v1/batches/batch_1", headers=auth())
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
    assert "refused" not in r.text and r.headers["retry-after"] == "1"


def test_metrics_count_by_route_template(api: Api) -> None:
    api.index.records["file-1"] = file_record(file_id="file-1")
    for file_id in ("file-1", "file-2", "file-3"):
        api.client.get(f"/v1/files/{file_id}", headers=auth())
    api.client.get("/v1/nothing", headers=auth())
    api.client.get("/v1/files")
    samples = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for metric in api.ctx.metrics.registry.collect()
        if metric.name == "thinkroute_api_requests"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert samples == {
        ("/v1/files/{file_id}", "GET", "200"): 1.0,
        ("/v1/files/{file_id}", "GET", "404"): 2.0,
        ("unmatched", "GET", "404"): 1.0,
        ("unmatched", "GET", "401"): 1.0,  # refused before routing: the path is not a label
    }
    counts = [
        s.value
        for metric in api.ctx.metrics.registry.collect()
        if metric.name == "thinkroute_api_request_seconds"
        for s in metric.samples
        if s.name.endswith("_count") and s.labels["route"] == "/v1/files/{file_id}"
    ]
    assert counts == [3.0]


async def test_a_client_that_disconnects_mid_upload_is_no_error(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    sent: list[dict[str, object]] = []
    messages = [
        {"type": "http.request", "body": b"--b\r\nContent-Disposition: form-data; name=", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    app = api.client.app
    headers = [(b"authorization", b"Bearer tr-alice-key"), (b"content-type", b"multipart/form-data; boundary=b")]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/files",
        "headers": headers,
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("t", 80),
        "app": app,
    }
    with caplog.at_level(logging.INFO, logger="workers.api.middleware"):
        await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent == [] and api.storage.objects == {} and api.index.records == {}
    assert any("disconnected" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
