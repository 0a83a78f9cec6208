"""`thinkroute run` with the user's own LLM server: the embedded stack starts broker and Redis only and the
workers send every request to that server (here a replay server of the test's own plays the user's server)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT
from tests.integration.procs import children, environ
from tests.integration.test_cli_run import SAMPLE, embedded_env, one_error_line, thinkroute
from workers.local.services import Service, start_replay

pytestmark = pytest.mark.integration
KEY = "sk-test-never-printed"


@pytest.fixture
def users_llm(services_dir: Path, unique: str) -> Iterator[Service]:
    svc = start_replay(services_dir / f"users-llm-{unique}", time_scale=0.0)
    yield svc
    svc.stop()


def served(svc: Service) -> int:
    stats = httpx.get(f"http://{svc.address}/stats").json()
    return int(stats["requests"])


def test_run_sends_every_request_to_the_users_llm(artifact: Path, tmp_path: Path, users_llm: Service) -> None:
    url = f"http://{users_llm.address}/v1"
    assert served(users_llm) == 0
    out = tmp_path / "results.jsonl"
    env = embedded_env(THINKROUTE_LLM_BASE_URL=url, THINKROUTE_LLM_API_KEY=KEY)
    proc = thinkroute("run", str(SAMPLE), "--output", str(out), "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert (summary["total"], summary["completed"], summary["failed"]) == (20, 20, 0)
    assert summary["llm"] == {
        "backend": "external",
        "base_url": url,
        "routes": {"reasoning": url, "direct": url},
        "model_urls": {},
        "api_key": True,
    }
    assert served(users_llm) == 20  # every answer came from the user's server: the stack started no replay
    assert KEY not in proc.stdout + proc.stderr
    completion = sum(
        json.loads(x)["response"]["body"]["usage"]["completion_tokens"] for x in out.read_text().splitlines()
    )
    assert completion == summary["tokens"]["completion"] > 0


def test_run_without_llm_settings_names_its_replay_server(artifact: Path, tmp_path: Path) -> None:
    proc = thinkroute("run", str(SAMPLE), "--time-scale", "0", env=embedded_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LLM: replay at http://127.0.0.1:" in proc.stdout


def test_a_route_without_a_url_fails_before_anything_starts(tmp_path: Path) -> None:
    proc = thinkroute("run", str(SAMPLE), "--json", env=embedded_env(THINKROUTE_LLM_REASONING_BASE_URL="http://x/v1"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "the direct route has no LLM URL" in one_error_line(proc)


async def test_stack_up_hands_the_users_llm_to_its_workers(artifact: Path, users_llm: Service) -> None:
    url = f"http://{users_llm.address}/v1"
    env = embedded_env(THINKROUTE_LLM_BASE_URL=url, THINKROUTE_LLM_API_KEY=KEY)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", "stack", "up", "--json", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        printed = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        kids = children(proc.pid)
        [inference] = [p for p, cmd in kids.items() if "worker inference" in cmd]
        worker_env = environ(inference)
        proc.send_signal(signal.SIGINT)
        rest, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and rest == b""
    assert printed["THINKROUTE_LLM_BASE_URL"] == url and KEY not in json.dumps(printed)
    assert not any("workers.replay.server" in cmd for cmd in kids.values()), kids
    assert (worker_env["THINKROUTE_LLM_BASE_URL"], worker_env["THINKROUTE_LLM_API_KEY"]) == (url, KEY)
    assert f"LLM: external at {url}" in stderr.decode() and KEY not in stderr.decode()
