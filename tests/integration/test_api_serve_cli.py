"""``thinkroute serve`` as a process: it prints the port it got, answers /health and a keyed route, exports
its request metrics by route template, and a SIGTERM ends it cleanly (exit 0, no traceback)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx
import pytest

from loadgen.procs import settings_env
from tests.helpers import ROOT
from workers.local.services import free_port
from workers.runtime.apikeys import key_hash
from workers.settings import Settings

pytestmark = pytest.mark.integration


async def test_serve_prints_its_port_serves_exports_metrics_and_stops_on_sigterm(
    settings: Settings, tmp_path: Path, unique: str
) -> None:
    key, metrics_port = f"tr-cli-{unique}", free_port()
    env = settings_env(
        settings,
        THINKROUTE_API__KEYS=json.dumps({key_hash(key): f"cli-{unique}"}),
        THINKROUTE_API__METRICS_PORT=str(metrics_port),
        THINKROUTE_API__FILES_DIR=str(tmp_path / "files"),
        THINKROUTE_METRICS_HOST="127.0.0.1",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", "serve", "--host", "127.0.0.1", "--port", "0",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        assert line.startswith("serving on http://127.0.0.1:") and not line.endswith(":0"), line
        url = line.removeprefix("serving on ")
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{url}/health")).json() == {"status": "ok"}
            r = await client.get(f"{url}/v1/files", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.json()["data"] == []
            assert (
                await client.get(f"{url}/v1/batches/batch_x", headers={"Authorization": f"Bearer {key}"})
            ).status_code == 404
            metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert 'thinkroute_api_requests_total{method="GET",route="/health",status="200"} 1.0' in metrics
        assert 'thinkroute_api_requests_total{method="GET",route="/v1/batches/{batch_id}",status="404"} 1.0' in metrics
        assert "batch_x" not in metrics
        assert 'thinkroute_api_request_seconds_count{route="/v1/files"} 1.0' in metrics
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        stderr = (await proc.stderr.read()).decode()
        assert code == 0, stderr
        assert "Traceback" not in stderr and "Batch API stopped" in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
