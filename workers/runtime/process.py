"""Serving a worker process: stop signals and the /metrics server for as long as the worker runs.

SIGTERM: stop fetching, finish (drain) what was fetched, commit, close. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import AsyncExitStack

from workers.runtime.metrics import WorkerMetrics
from workers.runtime.metrics_server import start_metrics_server

log = logging.getLogger(__name__)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def _on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without draining", signame)
            logging.shutdown()
            os._exit(130)
        log.info("%s received: stop fetching, drain, commit, close", signame)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig.name)


async def serve_metrics(stack: AsyncExitStack, metrics: WorkerMetrics, host: str, port: int) -> None:
    """Serve the worker's /metrics and /ready for as long as ``stack`` is open (port 0: not at all)."""
    server = await start_metrics_server(metrics, host, port)
    if server is not None:
        stack.push_async_callback(server.close)
