"""ThinkRoute on a real 3-master Valkey cluster (``THINKROUTE_REDIS_CLUSTER=true``, the URL one seed node, the
ThinkRoute user's ACL): jobs whose keys live on each of the three masters go through the router and the
inference workers with exact totals, the CLI reads them, and a master SIGKILLed mid-job and restarted from its
AOF (fsynced on every write) loses nothing and counts nothing twice."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.crc import key_slot

from loadgen.procs import settings_env
from tests.helpers import ROOT, wait_until
from tests.integration.api_serve import TERMINAL, api_settings, lines_of, sample_slice, serving, wait_status
from tests.integration.helpers import assert_exact_totals, running, sample_requests, submit_requests
from tests.integration.valkey_cluster import Cluster, Master, start_cluster
from workers.inference.serve import serve_inference
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.client import redis_client
from workers.store.jobstore import Store, meta_key
from workers.store.keys import JOBS_INDEX
from workers.submit.jobs import wait_for_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("valkey-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_settings(settings: Settings, valkey_cluster: Cluster) -> Settings:
    return settings.model_copy(update={"redis_url": SecretStr(valkey_cluster.url), "redis_cluster": True})


@pytest.fixture
async def store(cluster_settings: Settings) -> AsyncIterator[Store]:
    redis = redis_client(cluster_settings)
    yield Store(redis)
    await redis.aclose()


def job_on(cluster: Cluster, master: Master, unique: str) -> str:
    """A job id whose keys (hash tag ``{job}``) hash to a slot of ``master``."""
    return next(
        job
        for i in range(10_000)
        if cluster.master_of(key_slot(meta_key(job := f"job-{unique}{i:02x}").encode())) is master
    )


def thinkroute(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )


async def test_jobs_on_every_master_exact_totals_and_the_cli(
    cluster_settings: Settings, store: Store, valkey_cluster: Cluster, artifact: Path, unique: str, tmp_path: Path
) -> None:
    s = cluster_settings
    jobs = [job_on(valkey_cluster, m, unique) for m in valkey_cluster.masters]
    n = 24
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        metas = [await submit_requests(s, store, sample_requests(n), "cluster", job) for job in jobs]
        for meta in metas:
            await wait_for_job(store, meta, check=w.check, timeout_s=180)
    for meta, master in zip(metas, valkey_cluster.masters, strict=True):
        results = await assert_exact_totals(store, meta.job_id, n)
        assert {r.route.route for r in results} <= {"reasoning", "direct"}
        with master.admin() as r:  # the job's keys are on its master, and only there
            assert r.exists(meta_key(meta.job_id)) == 1
            assert r.execute_command("CLUSTER COUNTKEYSINSLOT", key_slot(meta_key(meta.job_id).encode())) >= 6
    assert set(jobs) <= set(await store.recent_jobs(50))  # the index, on a fourth slot, names all three

    env = settings_env(s)
    status = thinkroute(env, "status", jobs[1], "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    summary = json.loads(status.stdout)
    totals = await store.totals(jobs[1])
    assert (summary["job_id"], summary["total"], summary["completed"], summary["pending"]) == (jobs[1], n, n, 0)
    assert summary["routes"] == {route: t.requests for route, t in totals.routes.items()}
    out = tmp_path / "results.jsonl"
    exported = thinkroute(env, "results", jobs[2], "-o", str(out), "--json")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert json.loads(exported.stdout) == {"path": str(out), "lines": n}
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [r.custom_id for r in sample_requests(n)]


async def test_the_batch_api_on_the_cluster(cluster_settings: Settings, artifact: Path, tmp_path: Path) -> None:
    """Files, batches, their owner indexes and the active set are keys of other slots than the batch's own:
    upload, create, run, finalize, download and list across the masters."""
    s = api_settings(cluster_settings, tmp_path / "files", artifact)
    path = tmp_path / "in.jsonl"
    ids = sample_slice(path, 12)
    async with serving(s, artifact) as served:
        client = served.client()
        uploaded = await client.files.create(file=path, purpose="batch")
        made = [
            await client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            for _ in range(3)
        ]
        done = [await wait_status(client, b.id, TERMINAL, served) for b in made]
        assert [d.status for d in done] == ["completed"] * 3
        for d in done:
            counts = d.request_counts
            assert counts is not None and (counts.total, counts.completed + counts.failed) == (12, 12)
            assert d.output_file_id is not None
            output = await lines_of(client, d.output_file_id)
            errors = await lines_of(client, d.error_file_id)
            assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
        assert [b.id async for b in client.batches.list(limit=2)] == [b.id for b in made][::-1]
        listed = {f.id async for f in client.files.list()}
        assert {uploaded.id} | {d.output_file_id for d in done} <= listed
        store = Store(redis_client(s))
        assert not set(await store.active_batches()) & {b.id for b in made}  # finalized: out of the active set
        await store.redis.aclose()


@pytest.mark.parametrize("past_node_timeout", [False, True], ids=["restarted-at-once", "cluster-down-first"])
async def test_a_master_killed_and_restarted_mid_job_loses_nothing(
    cluster_settings: Settings,
    store: Store,
    valkey_cluster: Cluster,
    artifact: Path,
    unique: str,
    past_node_timeout: bool,
) -> None:
    """SIGKILL the master of one job's slot 30 answers in, restart it from its AOF. ``past_node_timeout``: it
    stays down until the others mark it failed (node timeout lowered to 1 s) and the whole cluster answers
    CLUSTERDOWN, so a second job, on another master, is held up too; both end exact."""
    s = cluster_settings.model_copy(
        update={
            "inference": cluster_settings.inference.model_copy(update={"concurrency": 16 if past_node_timeout else 4})
        }
    )
    # the job's master, not the seed node nor the one holding the jobs index: the others keep answering
    index_master = valkey_cluster.master_of(key_slot(JOBS_INDEX.encode()))
    victim = next(m for m in valkey_cluster.masters[1:] if m is not index_master)
    other = next(m for m in valkey_cluster.masters if m is not victim)
    jobs = [job_on(valkey_cluster, victim, unique), job_on(valkey_cluster, other, unique + "b")]
    n = 150
    if past_node_timeout:
        valkey_cluster.set_node_timeout(1000)
    try:
        async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
            metas = [await submit_requests(s, store, sample_requests(n), "cluster", job) for job in jobs]

            async def some_done() -> bool:
                w.check()
                tot = await store.totals(jobs[0])
                return tot.completed >= 30

            await wait_until(some_done, 120, "30 answers before the master is killed")
            before = [(await store.totals(job)).completed for job in jobs]
            assert victim.svc is not None
            victim.svc.proc.kill()
            victim.svc.proc.wait(10)
            probe = None
            if past_node_timeout:  # the workers keep running (and meet CLUSTERDOWN) meanwhile
                await asyncio.to_thread(valkey_cluster.wait_state, "fail", [other])
                # the other master refuses every key now (CLUSTERDOWN): this read can only succeed by retrying
                probe = asyncio.create_task(store.totals(jobs[1]))
            await asyncio.to_thread(victim.start)  # same port, AOF and nodes.conf: the same node, its slots
            await asyncio.to_thread(valkey_cluster.wait_ok)
            if probe is not None:
                assert (await probe).completed >= before[1]
            for meta in metas:
                await wait_for_job(store, meta, check=w.check, timeout_s=180)
    finally:
        if past_node_timeout:
            valkey_cluster.set_node_timeout(5000)
    assert before[0] < n and before[1] < n  # both jobs were midway
    for job in jobs:
        await assert_exact_totals(store, job, n)
        job_meta = await store.job_meta(job)
        assert job_meta is not None and job_meta.state == "done"
