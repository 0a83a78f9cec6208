"""The embedded stack is for one user: its Redis refuses clients without the password and refuses the
commands ThinkRoute does not use; no secret is on a command line; its files are its user's alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from schemas.messages import AttemptSummary
from schemas.records import JobMeta, RequestResult, Usage
from tests.factories import route_decision
from tests.helpers import ROOT
from tests.integration.helpers import register
from tests.integration.procs import alive, cmdline, redis_password, redis_url_of, stack_of, wait_for, workdir_of
from tests.integration.test_cli_run import SAMPLE, embedded_env, thinkroute
from workers.local.redis_conf import REDIS_USER
from workers.local.services import start_redis
from workers.store.jobstore import Store

pytestmark = pytest.mark.integration

REFUSED = (["SHUTDOWN"], ["SHUTDOWN", "NOSAVE"], ["FLUSHALL"], ["FLUSHDB"], ["KEYS", "*"], ["CONFIG", "GET", "*"])
REFUSED += (["CONFIG", "SET", "dir", "/tmp"], ["ACL", "LIST"], ["MONITOR"], ["SCAN", "0"], ["SCRIPT", "FLUSH"])


async def assert_locked(url: str) -> None:
    """No password: refused. Right password: ThinkRoute's commands on its keys, nothing else."""
    host_port = url.rsplit("@", 1)[1]
    stranger = Redis.from_url(f"redis://{host_port}")
    wrong = Redis.from_url(f"redis://{REDIS_USER}:wrong@{host_port}")
    default_user = Redis.from_url(f"redis://:{redis_password(url)}@{host_port}")  # the default user is off
    ours = Redis.from_url(url)
    try:
        for client in (stranger, wrong, default_user):
            with pytest.raises((AuthenticationError, ResponseError)):
                await client.get("tr:jobs")
        assert await ours.ping()
        for cmd in REFUSED:
            with pytest.raises(NoPermissionError):
                await ours.execute_command(*cmd)
        with pytest.raises(ResponseError, match="DEBUG command not allowed"):  # off before the ACL is asked
            await ours.execute_command("DEBUG", "SLEEP", "0")
        with pytest.raises(NoPermissionError):  # a key outside ThinkRoute's
            await ours.set("elsewhere", "x")
        with pytest.raises(ResponseError, match="no permissions to run the 'flushall'"):  # nor from a script
            await ours.register_script("return redis.call('FLUSHALL')")(keys=[], args=[])
        assert await ours.ping()  # still up, still answering
    finally:
        for client in (stranger, wrong, default_user, ours):
            await client.aclose()


async def test_embedded_redis_admits_only_its_user_and_thinkroutes_commands(tmp_path: Path) -> None:
    svc = start_redis(tmp_path, user=REDIS_USER, password="pw-" + os.urandom(8).hex())
    try:
        conf = tmp_path / "redis.conf"
        password = next(line for line in conf.read_text().splitlines() if line.startswith("user thinkroute"))
        password = password.split(">", 1)[1].split()[0]
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert password not in cmdline(svc.proc.pid)
        url = f"redis://{REDIS_USER}:{password}@{svc.address}/0"
        await assert_locked(url)
        # what the workers and the CLI do with Redis works under the ACL, pipelined or not
        redis = Redis.from_url(url)
        try:
            for store in (Store(redis), Store(redis, autopipeline=True)):
                job = f"job-{os.urandom(6).hex()}"
                await register(store, JobMeta(job_id=job, total=1, source="t", submitted_at=time.time()), [f"{job}/a"])
                assert (await store.job_meta(job)) is not None and job in await store.recent_jobs()
                res = RequestResult(
                    request_id=f"{job}/a",
                    job_id=job,
                    custom_id="a",
                    line=1,
                    status="completed",
                    route=route_decision(),
                    model="m",
                    usage=Usage(prompt_tokens=3, completion_tokens=5),
                    attempts=1,
                    llm_latency_s=0.5,
                    latency_s=0.75,
                    finished_at=time.time(),
                )
                assert await store.write_result(res) and not await store.write_result(res)
                first = AttemptSummary(route=route_decision(), model="m", confidence=0.1, threshold=0.5)
                assert await store.write_escalation(job, f"{job}/a", first)
                assert await store.is_done(job, f"{job}/a")
                assert (await store.totals(job)).completed == 1
                assert [r.custom_id async for r in store.results(job)] == ["a"]
                assert (await store.latency_percentiles(job))["p50"] == pytest.approx(0.75)
                assert (await store.totals(job)).escalations.requests == 1
        finally:
            await redis.aclose()
    finally:
        svc.stop()


async def wait_job(url: str, job: str, total: int, timeout: float = 120.0) -> None:
    redis = Redis.from_url(url)
    try:
        store = Store(redis)
        deadline = time.monotonic() + timeout
        while (await store.totals(job)).completed < total:
            assert time.monotonic() < deadline, f"job {job} not done within {timeout:.0f}s"
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


def test_stack_up_runs_locked_down(artifact: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers", "stack", "up", "--json", "--time-scale", "0"],
        env=embedded_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        env = json.loads(proc.stdout.readline())
        stack = stack_of(proc.pid)
        url = env["THINKROUTE_REDIS_URL"]
        assert redis_url_of(stack) == url  # the workers get it through their environment...
        secret = redis_password(url)
        for pid in [proc.pid, *stack]:  # ... and no process has it on its command line (what `ps` shows)
            assert secret not in cmdline(pid), cmdline(pid)
        assert env["THINKROUTE_KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")  # PLAINTEXT, loopback only
        workdir = workdir_of(stack)
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        files = [p for p in workdir.rglob("*") if p.is_file()]
        assert {"redis.conf", "owner", "broker.log", "redis.log", "replay.log"} <= {p.name for p in files}
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}
        asyncio.run(assert_locked(url))
        # ThinkRoute works end to end under the ACL: submit, the workers answer, status
        submitted = thinkroute("submit", str(SAMPLE), "--json", env=embedded_env(**env), timeout=120)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        job = json.loads(submitted.stdout)["job_id"]
        asyncio.run(wait_job(url, job, 20))
        status = thinkroute("status", job, "--json", env=embedded_env(**env), timeout=60)
        assert status.returncode == 0 and json.loads(status.stdout)["completed"] == 20, status.stderr[-2000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        wait_for(lambda: not any(alive(p) for p in stack), 10, "the stack's processes to end")
        assert not workdir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
