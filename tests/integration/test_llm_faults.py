"""The LLM backend misbehaves: 5xx, 429 with Retry-After, hangs past the timeout, dropped connections.

Transient faults are retried with backoff and jitter; prompts that always fail end as failed records
plus dead letters after the last attempt; the job completes and its totals are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from schemas.messages import DeadLetter
from tests.integration.helpers import assert_exact_totals, read_topic, running, sample_requests, submit_requests
from workers.inference.serve import serve_inference
from workers.local.services import Service, start_replay
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest
from workers.submit.jobs import wait_for_job

pytestmark = pytest.mark.integration
MARKER = "POISON-PILL-7"
FAULTS = [
    "--fault-5xx",
    "0.10",
    "--fault-429",
    "0.08",
    "--fault-reset",
    "0.07",
    "--fault-timeout",
    "0.05",
    "--fault-hang-s",
    "3",
    "--fault-retry-after-s",
    "0.1",
    "--fault-fail-marker",
    MARKER,
    "--fault-seed",
    "3",
]


@pytest.fixture
def faulty_replay(services_dir: Path, unique: str) -> Iterator[Service]:
    svc = start_replay(services_dir / f"faulty-{unique}", time_scale=0.0, extra=FAULTS)
    yield svc
    svc.stop()


def poisoned(requests: list[InputRequest], every: int) -> list[InputRequest]:
    out = []
    for i, r in enumerate(requests):
        if i % every == 0:
            msg = r.body.messages[-1]
            body = r.body.model_copy(
                update={"messages": [msg.model_copy(update={"content": f"{msg.content} {MARKER}"})]}
            )
            r = InputRequest(r.line, r.custom_id, body)
        out.append(r)
    return out


async def test_retries_then_dead_letters_and_exact_totals(
    settings: Settings, artifact: Path, redis: Redis, faulty_replay: Service
) -> None:
    s = settings.model_copy(
        update={
            "llm_base_url": f"http://{faulty_replay.address}/v1",
            "inference": settings.inference.model_copy(
                update={"max_attempts": 8, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "read_timeout_s": 1.0}
            ),
        }
    )
    requests = poisoned(sample_requests(40), every=10)
    poison_ids = {r.custom_id for r in requests if MARKER in r.body.messages[-1].content}
    assert len(poison_ids) == 4
    store = Store(redis)
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        meta = await submit_requests(s, store, requests, "faults")
        await wait_for_job(store, meta, check=w.check, timeout_s=180)
    results = {r.custom_id: r for r in await assert_exact_totals(store, meta.job_id, 36, 4)}
    failed = {cid for cid, r in results.items() if r.status == "failed"}
    assert failed == poison_ids
    for cid in failed:
        assert results[cid].attempts == 8 and results[cid].http_status == 503
        assert "gave up after 8 attempts" in (results[cid].error or "")
    assert max(r.attempts for r in results.values() if r.status == "completed") > 1
    bootstrap = s.kafka_bootstrap or ""
    dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(bootstrap, s.topics.dead, 4)]
    assert sorted(d.request_id or "" for d in dead) == sorted(f"{meta.job_id}/{cid}" for cid in poison_ids)
    assert all(d.stage == "inference" and "gave up after 8 attempts" in d.reason for d in dead)
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"http://{faulty_replay.address}/stats")).json()
    assert all(stats["faults"].get(kind, 0) > 0 for kind in ("5xx", "429", "reset", "timeout")), stats["faults"]
