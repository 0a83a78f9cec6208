"""A primary LLM that fails every request (replay server, 100% 503 set through POST /faults) and a healthy
fallback (a second replay server): a job completes with every result from the fallback and recorded so, the
primary's breaker opens and later requests skip it (fewer requests reach the primary than one per request,
counted on the primary itself); with its faults cleared, once the breaker reports half-open, a second job is
answered by the primary again. Every request and token is counted once; the replay servers' own counters
agree with the results' ``answered_by``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.helpers import wait_until
from tests.integration.helpers import assert_exact_totals, running, sample_requests, submit_requests
from tests.integration.test_metrics import scrape, total
from workers.inference.serve import serve_inference
from workers.local.services import Service, free_port, start_replay
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.jobstore import Store
from workers.submit.jobs import summary, wait_for_job

pytestmark = pytest.mark.integration
JOB1, JOB2 = 60, 24
MAX_ATTEMPTS, FAILURES = 3, 3


@pytest.fixture
def two_replays(services_dir: Path, unique: str) -> Iterator[tuple[Service, Service]]:
    primary = start_replay(services_dir / f"primary-{unique}", time_scale=0.0)
    fallback = start_replay(services_dir / f"fallback-{unique}", time_scale=0.0)
    yield primary, fallback
    primary.stop()
    fallback.stop()


async def stats(http: httpx.AsyncClient, svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = (await http.get(f"http://{svc.address}/stats")).json()
    return out


async def test_a_failing_primary_falls_back_opens_its_breaker_and_recovers(
    settings: Settings, artifact: Path, redis: Redis, two_replays: tuple[Service, Service]
) -> None:
    primary, fallback = two_replays
    primary_url, fallback_url = f"http://{primary.address}/v1", f"http://{fallback.address}/v1"
    port = free_port()
    s = settings.model_copy(
        update={
            "llm_base_url": primary_url,
            "metrics_host": "127.0.0.1",
            "inference": settings.inference.model_copy(
                update={
                    "concurrency": 1,  # one request at a time: the probe is alone, so who answers is exact
                    "max_attempts": MAX_ATTEMPTS,
                    "backoff_base_s": 0.01,
                    "backoff_max_s": 0.02,
                    "fallback_base_url": fallback_url,
                    "breaker_failures": FAILURES,
                    "breaker_cooldown_s": 1.0,
                    "metrics_port": port,
                }
            ),
        }
    )
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    store = Store(redis)
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"http://{primary.address}/faults", json={"share_5xx": 1.0})).status_code == 200
        async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
            meta1 = await submit_requests(s, store, sample_requests(JOB1), "fallback-1")
            await wait_for_job(store, meta1, check=w.check, timeout_s=180)
            first = await assert_exact_totals(store, meta1.job_id, JOB1)
            p1, f1 = await stats(http, primary), await stats(http, fallback)
            samples = await scrape(metrics_url)

            # every answer came from the fallback, recorded so
            assert all(r.answered_by is not None and r.answered_by.fallback for r in first)
            assert {r.answered_by.base_url for r in first if r.answered_by} == {fallback_url}
            # the breaker skipped the primary: fewer requests reached it than one per request (JOB1 x 3 without
            # it), and each of them is an attempt some result counted before its one fallback attempt
            assert p1["requests"] == 0 and MAX_ATTEMPTS <= p1["received"] < JOB1
            assert sum(r.attempts - 1 for r in first) == p1["received"]
            assert f1["requests"] == f1["received"] == JOB1
            assert total(samples, "thinkroute_llm_breaker_opens_total", base_url=primary_url) >= 1
            skipped = total(samples, "thinkroute_llm_fallback_total", reason="breaker_open")
            assert skipped + total(samples, "thinkroute_llm_fallback_total", reason="retries_exhausted") == JOB1
            assert skipped >= JOB1 - p1["received"]  # a request that never met the primary went straight there
            sm = await summary(store, meta1)
            assert (sm["completed"], sm["fallback"]) == (JOB1, JOB1)
            assert not await store.write_result(first[0])  # a redelivered write counts nothing, fallback included
            assert (await store.totals(meta1.job_id)).fallback == JOB1

            # the primary heals; once its cool-down passed the next request probes it and closes the breaker
            assert (await http.post(f"http://{primary.address}/faults", json={})).status_code == 200

            async def half_open() -> bool:
                state = await scrape(metrics_url)
                return total(state, "thinkroute_llm_breaker_state", base_url=primary_url, state="half_open") == 1

            await wait_until(half_open, timeout=30, what="the breaker half-open after its cool-down")
            meta2 = await submit_requests(s, store, sample_requests(JOB2), "fallback-2")
            await wait_for_job(store, meta2, check=w.check, timeout_s=180)
            second = await assert_exact_totals(store, meta2.job_id, JOB2)
            p2, f2 = await stats(http, primary), await stats(http, fallback)
            samples = await scrape(metrics_url)

    # the probe succeeded and closed the breaker: the primary answered every request of the second job, once
    assert all(r.answered_by is not None and not r.answered_by.fallback for r in second)
    assert all(r.answered_by.base_url == primary_url and r.attempts == 1 for r in second if r.answered_by)
    assert p2["requests"] == JOB2 and p2["received"] == p1["received"] + JOB2
    assert f2["received"] == JOB1
    assert total(samples, "thinkroute_llm_breaker_state", base_url=primary_url, state="closed") == 1
    totals2 = await store.totals(meta2.job_id)
    assert totals2.fallback == 0
