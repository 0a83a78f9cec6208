"""``thinkroute serve``: the Batch API's process. One Redis client, one Kafka producer, the file storage and
the topics, opened once; uvicorn, the sweeper and the batches' intakes in one TaskGroup.

SIGTERM or SIGINT: uvicorn stops accepting and finishes the requests in flight (uploads included, up to
``HTTP_GRACE_S``), the sweeper ends its pass, the running intakes get ``INTAKE_GRACE_S`` to finish and are
failed with a clear reason after it; then the clients close. A second signal exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack

import uvicorn

from workers.api.app import build_app
from workers.api.auth import Keys
from workers.api.context import ApiContext
from workers.api.intakes import Intakes
from workers.api.metrics import ApiMetrics
from workers.api.planner import Planners
from workers.api.sweeper import Sweeper
from workers.files.storage import open_storage
from workers.kafka.clients import ensure_topics, kafka_config, make_producer, start_client
from workers.runtime.metrics_server import start_metrics_server
from workers.runtime.process import install_stop_signals
from workers.runtime.tasks import task_group
from workers.settings import Settings
from workers.store.client import redis_client
from workers.store.files import FileIndex
from workers.store.jobstore import Store

log = logging.getLogger(__name__)

HTTP_GRACE_S = 30.0
INTAKE_GRACE_S = 20.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # serve_api owns SIGTERM and SIGINT (uvicorn would re-raise them after its shutdown)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    sock.setblocking(False)
    return sock


async def serve_api(
    s: Settings,
    keys: Keys,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``, when the caller passes one). ``on_ready`` gets the base URL
    (``http://host:port``, the real port when the settings ask for 0) once the socket listens."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    api, t = s.api, s.topics
    kc = kafka_config(s)
    async with AsyncExitStack() as stack:
        redis = redis_client(s)
        stack.push_async_callback(redis.aclose)
        await redis.ping()
        await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
        producer = make_producer(kc)
        await start_client(producer, kc)
        stack.push_async_callback(producer.stop)
        storage = open_storage(api, s.cache_dir)
        stack.push_async_callback(storage.close)
        store, index = Store(redis), FileIndex(redis)
        metrics = ApiMetrics()
        metrics_server = await start_metrics_server(metrics, s.metrics_host, api.metrics_port)
        if metrics_server is not None:
            stack.push_async_callback(metrics_server.close)
        planners = Planners(s)
        stack.callback(planners.close)
        intakes = Intakes(producer, store, storage, s)
        ctx = ApiContext(s, store, index, storage, keys, intakes, planners, metrics)
        sweeper = Sweeper(store, index, storage, api)
        config = uvicorn.Config(
            build_app(ctx),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(HTTP_GRACE_S),
        )
        server = _Server(config)
        sock = bind(api.host, api.port)
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"

        async def stop_server() -> None:
            await stop.wait()
            server.should_exit = True

        async with task_group() as tg:
            intakes.bind(tg.create_task)
            tg.create_task(stop_server(), name="api:stop")
            tg.create_task(sweeper.run(stop), name="api:sweeper")
            log.info("Batch API on %s (%d keys), files in %s", url, len(keys), api.files_url or api.files_dir)
            if on_ready is not None:
                on_ready(url)
            try:
                await server.serve(sockets=[sock])
            finally:
                stop.set()
                await intakes.close(INTAKE_GRACE_S)
        log.info("Batch API stopped")
