"""The official SDK's batch workflow against a real ``thinkroute serve`` (session broker and Redis, a router
and an inference worker in-process, the replay LLM): upload, create, poll to completed, download the output
and error files; list pages; two keys isolated; a malformed file failing with its line errors."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from redis.asyncio import Redis

from tests.integration.api_serve import (
    TERMINAL,
    api_settings,
    key_of,
    lines_of,
    owner_of,
    sample_slice,
    serving,
    wait_status,
)
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.jobs import summary

pytestmark = pytest.mark.integration


async def test_upload_create_poll_download(settings: Settings, artifact: Path, redis: Redis, tmp_path: Path) -> None:
    s = api_settings(settings, tmp_path / "files", artifact)
    path = tmp_path / "in.jsonl"
    ids = sample_slice(path, 30)
    async with serving(s, artifact) as served:
        client = served.client()
        uploaded = await client.files.create(file=path, purpose="batch")
        assert (uploaded.bytes, uploaded.filename, uploaded.purpose) == (path.stat().st_size, "in.jsonl", "batch")
        assert (await client.files.content(uploaded.id)).content == path.read_bytes()
        batch = await client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "sdk"},
        )
        assert batch.status == "validating" and batch.metadata == {"run": "sdk"}
        done = await wait_status(client, batch.id, TERMINAL, served)
        assert done.status == "completed", done
        counts = done.request_counts
        assert counts is not None and counts.total == 30 and counts.completed + counts.failed == 30
        assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
        assert done.output_file_id is not None
        extra = done.model_extra["thinkroute"]
        assert sum(extra["routes"].values()) == 30 and (extra["stopped"], extra["in_flight"]) == (0, 0)
        assert done.usage is not None and done.usage.input_tokens > 0 and done.usage.output_tokens > 0

        output = await lines_of(client, done.output_file_id)
        errors = await lines_of(client, done.error_file_id)
        assert len(output) == counts.completed and len(errors) == counts.failed
        for lines in (output, errors):  # each file in input order; together, every request once
            got = [line["custom_id"] for line in lines]
            assert got == [c for c in ids if c in set(got)]
        assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
        for line in output:
            assert line["id"].startswith("batch_req_") and line["error"] is None
            assert line["response"]["status_code"] == 200 and line["response"]["body"]["choices"]
        out_file = await client.files.retrieve(done.output_file_id)
        assert out_file.purpose == "batch_output" and out_file.bytes > 0
        listed = {f.id: f.purpose async for f in client.files.list()}
        assert listed[uploaded.id] == "batch" and listed[done.output_file_id] == "batch_output"

    # one job model: the CLI's summary reads the API's batch as any job
    store = Store(redis)
    meta = await store.job_meta(batch.id)
    assert meta is not None and meta.owner == owner_of(s, "alice") and meta.total == 30
    assert (await summary(store, meta))["state"] == "done"


async def test_list_pages_newest_first(settings: Settings, artifact: Path, tmp_path: Path) -> None:
    s = api_settings(settings, tmp_path / "files", artifact)
    path = tmp_path / "in.jsonl"
    sample_slice(path, 2)
    async with serving(s, artifact, workers=False) as served:
        client = served.client()
        uploaded = await client.files.create(file=path, purpose="batch")
        made = [
            (
                await client.batches.create(
                    input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            ).id
            for _ in range(3)
        ]
        first = await client.batches.list(limit=2)
        assert [b.id for b in first.data] == made[::-1][:2] and first.has_more is True
        second = await client.batches.list(limit=2, after=first.data[-1].id)
        assert [b.id for b in second.data] == made[:1] and second.has_more is False
        assert [b.id async for b in client.batches.list(limit=2)] == made[::-1]  # the SDK follows the pages


async def test_two_keys_are_isolated(settings: Settings, artifact: Path, tmp_path: Path) -> None:
    s = api_settings(settings, tmp_path / "files", artifact)
    path = tmp_path / "in.jsonl"
    sample_slice(path, 2)
    async with serving(s, artifact, workers=False) as served:
        alice, bob = served.client("alice"), served.client("bob")
        f = await alice.files.create(file=path, purpose="batch")
        b = await alice.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        for call in (
            lambda: bob.files.retrieve(f.id),
            lambda: bob.files.content(f.id),
            lambda: bob.files.delete(f.id),
            lambda: bob.batches.retrieve(b.id),
            lambda: bob.batches.cancel(b.id),
            lambda: bob.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"),
        ):
            with pytest.raises(openai.NotFoundError) as exc:
                await call()
            assert exc.value.status_code == 404
        assert [x async for x in bob.batches.list()] == [] and [x async for x in bob.files.list()] == []
        assert (await alice.batches.retrieve(b.id)).id == b.id and (await alice.files.retrieve(f.id)).id == f.id
        with pytest.raises(openai.AuthenticationError) as auth:
            await served.client(key="tr-wrong").batches.list()
        assert auth.value.code == "invalid_api_key"
        assert key_of(s, "alice") not in json.dumps(auth.value.body)


async def test_a_malformed_file_fails_with_line_errors(settings: Settings, artifact: Path, tmp_path: Path) -> None:
    s = api_settings(settings, tmp_path / "files", artifact)
    path = tmp_path / "bad.jsonl"
    good = sample_slice(tmp_path / "good.jsonl", 2)
    lines = (tmp_path / "good.jsonl").read_text(encoding="utf-8").splitlines()
    bad = [
        lines[0],
        "{not json",
        json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}),
        lines[0],  # its custom id again
        lines[1],
    ]
    path.write_text("\n".join(bad) + "\n", encoding="utf-8")
    async with serving(s, artifact, workers=False) as served:
        client = served.client()
        f = await client.files.create(file=path, purpose="batch")
        b = await client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        failed = await wait_status(client, b.id, TERMINAL, served, timeout=60)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data
    by_line = {e.line: e.code for e in failed.errors.data}
    assert set(by_line) == {2, 3, 4}, failed.errors
    assert by_line[2] == "invalid_json_line" and by_line[4] == "duplicate_custom_id"
    assert failed.request_counts is not None and failed.request_counts.completed == 0
    assert failed.output_file_id is None and failed.error_file_id is None and good


async def test_a_budget_and_an_exploration_sample_from_the_metadata(
    settings: Settings, artifact: Path, tmp_path: Path
) -> None:
    s = api_settings(settings, tmp_path / "files", artifact)
    path = tmp_path / "in.jsonl"
    sample_slice(path, 20, start=40)
    metadata = {"thinkroute_reasoning_share": "0.5", "thinkroute_explore": "0.25", "thinkroute_explore_seed": "3"}
    async with serving(s, artifact) as served:
        client = served.client()
        f = await client.files.create(file=path, purpose="batch")
        b = await client.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata=metadata
        )
        done = await wait_status(client, b.id, TERMINAL, served)
    assert done.status == "completed", done
    extra = done.model_extra["thinkroute"]
    plan = extra["plan"]
    assert (plan["budget"], plan["planned"]["reasoning"], plan["explore_total"]) == ("share=0.5", 10, 5)
    assert extra["routes"]["reasoning"] == plan["realised"]["reasoning"] == 10
    assert extra["exploration"]["total"] == 5 and extra["exploration"]["pending"] == 0
    assert sum(r["requests"] for r in extra["exploration"]["routes"].values()) == 5
    assert extra["savings"] is not None or extra["savings_hint"]
    # the exploration sample's second answers are not in the batch's usage
    routed = sum(t["prompt"] for t in extra["tokens_by_route"].values())
    assert done.usage is not None and done.usage.input_tokens == routed
