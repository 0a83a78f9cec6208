"""Two ``thinkroute serve`` replicas sharing one Redis and one S3-compatible file store (SeaweedFS): a file
uploaded through one is a batch's input through the other, the batch is polled through either, its output is
downloaded through the other, and the two sweepers write its output and error files once."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.integration.api_serve import TERMINAL, Served, api_settings, lines_of, sample_slice, wait_status
from tests.integration.helpers import running
from tests.integration.seaweed import BUCKET, ready_storage
from workers.api.auth import Keys
from workers.api.serve import serve_api
from workers.inference.serve import serve_inference
from workers.local.services import Service
from workers.router.serve import serve_router
from workers.settings import Settings

pytestmark = pytest.mark.integration


async def test_two_replicas_share_files_through_s3(
    settings: Settings, artifact: Path, weed: Service, unique: str, tmp_path: Path
) -> None:
    await ready_storage(weed, f"api-{unique}")  # the bucket answers
    s3 = {
        "files_url": f"s3://{BUCKET}/api-{unique}",
        "s3_endpoint": f"http://{weed.address}",
        "s3_access_key_id": "thinkroute",
        "s3_secret_access_key": SecretStr("thinkroute"),
    }
    s = api_settings(settings, tmp_path / "unused", artifact, **s3)
    assert s.api.files_dir is not None and not s.api.files_dir.exists()
    path = tmp_path / "in.jsonl"
    ids = sample_slice(path, 20)
    loop = asyncio.get_running_loop()
    ready = [loop.create_future(), loop.create_future()]
    keys = Keys.from_settings(s.api)
    factories: list[Any] = [partial(serve_api, s, keys, on_ready=r.set_result) for r in ready]  # (stop) -> serve
    factories += [partial(serve_router, s, artifact=artifact), partial(serve_inference, s)]
    async with running(*factories) as workers:
        a_url, b_url = await asyncio.wait_for(asyncio.gather(*ready), 60)
        a, b = Served(a_url, s, workers), Served(b_url, s, workers)
        assert a_url != b_url
        one, other = a.client(), b.client()
        uploaded = await one.files.create(file=path, purpose="batch")
        assert (await other.files.retrieve(uploaded.id)).bytes == path.stat().st_size
        assert (await other.files.content(uploaded.id)).content == path.read_bytes()
        batch = await other.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = await wait_status(one, batch.id, TERMINAL, a)
        assert done.status == "completed" and done.request_counts is not None
        assert done.request_counts.total == 20
        output = await lines_of(other, done.output_file_id)
        errors = await lines_of(one, done.error_file_id)
        assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
        assert len(output) == done.request_counts.completed
        listed = [f async for f in one.files.list(purpose="batch_output")]
        ours = [f for f in listed if f.filename.startswith(batch.id)]
        want = {done.output_file_id, done.error_file_id} - {None}
        assert {f.id for f in ours} == want and len(ours) == len(want)  # written once, by one replica
        assert not (tmp_path / "unused").exists()  # nothing went to a local directory
