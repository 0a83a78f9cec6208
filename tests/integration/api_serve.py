"""``thinkroute serve`` in the test's event loop on the session broker and Redis, with a router and an inference
worker in-process (``tests.integration.helpers.running``), and the official SDK pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from tests.helpers import wait_until
from tests.integration.helpers import SAMPLE, Workers, running
from workers.api.auth import Keys
from workers.api.serve import serve_api
from workers.inference.serve import serve_inference
from workers.router.serve import serve_router
from workers.runtime.apikeys import key_hash
from workers.settings import Settings

OWNERS = ("alice", "bob")
TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    settings: Settings
    workers: Workers
    clients: list[AsyncOpenAI] = field(default_factory=list)

    def client(self, owner: str = "alice", key: str | None = None) -> AsyncOpenAI:
        """An SDK client, closed when ``serving`` ends. A client left to the garbage collector closes its
        sockets without unregistering them from the (session-wide) event loop's selector, and a later
        socket given the same descriptor is then never polled: a server that never accepts."""
        key = key or key_of(self.settings, owner)
        self.clients.append(AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=30))
        return self.clients[-1]


def owner_of(s: Settings, name: str) -> str:
    """The test's own owner names (the session Redis holds every test's batches): ``alice-<topic suffix>``."""
    return f"{name}-{s.topics.prompts}"


def key_of(s: Settings, name: str) -> str:
    return f"tr-test-{owner_of(s, name)}"


def api_settings(s: Settings, files_dir: Path, artifact: Path, **api: Any) -> Settings:
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": 0,
        "files_dir": files_dir,
        "keys": {key_hash(key_of(s, name)): owner_of(s, name) for name in OWNERS},
        "sweep_s": 0.2,
    }
    router = s.router.model_copy(update={"artifact_dir": artifact})
    return s.model_copy(update={"api": s.api.model_copy(update=fields | api), "router": router})


@contextlib.asynccontextmanager
async def serving(s: Settings, artifact: Path, workers: bool = True) -> AsyncIterator[Served]:
    """Serve (and, with ``workers``, run a router and an inference worker) until the block ends."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    factories: list[Any] = [lambda stop: serve_api(s, Keys.from_settings(s.api), stop, on_ready=ready.set_result)]
    if workers:
        factories += [lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)]
    async with running(*factories) as w:
        done, _ = await asyncio.wait([ready, *w.tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        w.check()
        assert ready in done, "serve did not start within 60 s"
        served = Served(ready.result(), s, w)
        try:
            yield served
        finally:
            for client in served.clients:
                await client.close()


def sample_slice(path: Path, n: int, start: int = 0) -> list[str]:
    """Write ``n`` lines of the 200-question sample to ``path``; their custom ids, in order."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[start : start + n]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [json.loads(line)["custom_id"] for line in lines]


async def wait_status(
    client: AsyncOpenAI, batch_id: str, statuses: Sequence[str], served: Served, timeout: float = 180
) -> Any:
    """Poll the batch (as a client would) until its status is one of ``statuses``; the batch."""
    seen: list[Any] = []

    async def reached() -> bool:
        served.workers.check()
        seen.append(await client.batches.retrieve(batch_id))
        return seen[-1].status in statuses

    await wait_until(reached, timeout, f"batch {batch_id} to be {'/'.join(statuses)} (last: {seen[-1:]})")
    return seen[-1]


async def lines_of(client: AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines() if line.strip()]
