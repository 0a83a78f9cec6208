"""Cancel and expiry through the API with the official SDK (real broker, Redis, router and inference workers,
a slow replay LLM): exact counts (completed + failed + stopped == total), the stopped requests in the error
file as batch_cancelled / batch_expired, what was answered kept in the output file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers import wait_until
from tests.integration.api_serve import Served, api_settings, lines_of, sample_slice, serving, wait_status
from workers.local.services import Service
from workers.settings import Settings

pytestmark = pytest.mark.integration


SLOW_TIME_SCALE = 0.03  # the slow_replay fixture (tests/conftest.py)


def slow(settings: Settings, replay: Service, tmp_path: Path, artifact: Path, **api: Any) -> Settings:
    s = settings.model_copy(
        update={
            "llm_base_url": f"http://{replay.address}/v1",
            "inference": settings.inference.model_copy(update={"concurrency": 4}),
        }
    )
    return api_settings(s, tmp_path / "files", artifact, **api)


async def check_files(served: Served, batch: Any, ids: list[str], code: str) -> None:
    """Output: the completed requests; errors: the failed ones and the stopped ones (``code``); each request
    once, each file in input order."""
    client = served.client()
    counts, extra = batch.request_counts, batch.model_extra["thinkroute"]
    assert counts.total == len(ids)
    assert counts.completed + counts.failed + extra["stopped"] == len(ids) and extra["in_flight"] == 0
    assert extra["stopped"] > 0, "nothing was stopped: the LLM was too fast for the test"
    output = await lines_of(client, batch.output_file_id)
    errors = await lines_of(client, batch.error_file_id)
    stopped = [e for e in errors if e["error"] is not None and e["error"]["code"] == code]
    assert len(output) == counts.completed and len(stopped) == extra["stopped"]
    assert len(errors) == counts.failed + extra["stopped"]
    for line in stopped:
        assert line["response"] is None and line["id"].startswith("batch_req_")
    for lines in (output, errors):
        got = [line["custom_id"] for line in lines]
        assert got == [c for c in ids if c in set(got)]
    assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)


async def test_cancel_midway(settings: Settings, artifact: Path, slow_replay: Service, tmp_path: Path) -> None:
    s = slow(settings, slow_replay, tmp_path, artifact)
    path = tmp_path / "in.jsonl"
    ids = sample_slice(path, 40)
    async with serving(s, artifact) as served:
        client = served.client()
        f = await client.files.create(file=path, purpose="batch")
        b = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")

        async def some_answers() -> bool:
            served.workers.check()
            counts = (await client.batches.retrieve(b.id)).request_counts
            return counts is not None and counts.completed >= 5

        await wait_until(some_answers, 120, "5 answers")
        cancelling = await client.batches.cancel(b.id)
        assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
        cancelled = await wait_status(client, b.id, ("cancelled",), served, timeout=120)
        assert cancelled.cancelled_at is not None and cancelled.cancelled_at >= cancelled.cancelling_at
        assert cancelled.completed_at is None and cancelled.expired_at is None
        await check_files(served, cancelled, ids, "batch_cancelled")
        again = await client.batches.cancel(b.id)  # already cancelled: the batch as it is
        assert again.status == "cancelled" and again.request_counts == cancelled.request_counts


async def test_expiry_with_a_short_window(
    settings: Settings, artifact: Path, slow_replay: Service, tmp_path: Path
) -> None:
    s = slow(settings, slow_replay, tmp_path, artifact, completion_windows=["24h", "3s"])
    path = tmp_path / "in.jsonl"
    ids = sample_slice(path, 60)
    sample_slice(tmp_path / "warm.jsonl", 2, start=100)
    async with serving(s, artifact) as served:
        client = served.client()
        # a first batch to completion: the workers are in their groups, so the short window is spent answering
        warm = await client.files.create(file=tmp_path / "warm.jsonl", purpose="batch")
        w = await client.batches.create(input_file_id=warm.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert (await wait_status(client, w.id, ("completed",), served, timeout=120)).status == "completed"
        f = await client.files.create(file=path, purpose="batch")
        b = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="3s")
        assert b.expires_at == b.created_at + 3
        expired = await wait_status(client, b.id, ("expired", "completed"), served, timeout=120)
        assert expired.status == "expired", expired
        assert expired.expired_at is not None and expired.expired_at >= b.expires_at - 1
        assert expired.completed_at is None and expired.cancelled_at is None
        await check_files(served, expired, ids, "batch_expired")
        assert expired.request_counts.completed > 0  # what was answered before the expiry is kept
        with pytest.raises(openai.ConflictError) as exc:
            await client.batches.cancel(b.id)
        assert exc.value.status_code == 409 and "status expired" in exc.value.message
