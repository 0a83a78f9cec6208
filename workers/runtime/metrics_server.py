"""A worker's HTTP endpoint: ``/metrics`` (prometheus_client's ASGI app) and ``/ready``, on uvicorn.

uvicorn serves as a task on the worker's own event loop, not in a thread: the consumer collector reads
aiokafka consumer state (assignment, high watermarks), which only the loop may touch, so a scrape never
races the worker. uvicorn must not take the process's signals (the worker's SIGTERM handler drains and
commits: :func:`workers.runtime.process.install_stop_signals`), and the socket is bound here, so that a taken
port is a logged error rather than uvicorn's ``sys.exit``.

``/ready`` answers 200 once the worker's consumer has joined its group (it owns partitions, or is an idle
member with none), 503 before and after; ``/metrics`` answers as soon as the server is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Protocol

import uvicorn
from prometheus_client import CollectorRegistry, make_asgi_app

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Exported(Protocol):
    """What the server exports: a worker's ``WorkerMetrics``, or ``thinkroute serve``'s ``ApiMetrics``."""

    stage: str
    registry: CollectorRegistry

    def ready(self) -> bool: ...


def metrics_app(metrics: Exported) -> ASGIApp:
    """``/metrics`` (and ``/``): the registry, in the format and encoding the scraper asks for; ``/ready``."""
    exposition: ASGIApp = make_asgi_app(metrics.registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in ("/metrics", "/"):
            await exposition(scope, receive, send)
            return
        if path == "/ready":
            ready = metrics.ready()
            status, body = (200, b"ready\n") if ready else (503, b"not consuming: the group has not been joined\n")
        else:
            status, body = 404, b"not found; try /metrics or /ready\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class _LoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the worker owns SIGTERM and SIGINT


class MetricsServer:
    """uvicorn running as a task on the current loop; :meth:`close` stops it (a scrape in flight finishes)."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.port: int = sock.getsockname()[1]
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name=f"metrics-server:{self.port}")
        self._task.add_done_callback(self._done)

    @staticmethod
    def _done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("metrics server stopped: %r; running without metrics", task.exception())

    async def close(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)  # SO_REUSEADDR: a TIME_WAIT port is free
    sock.setblocking(False)
    return sock


async def start_metrics_server(metrics: Exported, host: str, port: int) -> MetricsServer | None:
    """Serve ``/metrics`` and ``/ready`` from the running loop; None if off (port 0) or the port is taken.

    A port that is taken is logged, not fatal: the worker's job matters more than its metrics.
    """
    if port == 0:
        return None
    try:
        sock = _bind(host, port)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); running without metrics", host, port, exc)
        return None
    config = uvicorn.Config(
        metrics_app(metrics),
        lifespan="off",
        log_config=None,  # the process's logging as it is; uvicorn's own loggers propagate to it
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=2,  # close: a scrape in flight gets 2 s to finish
    )
    server = MetricsServer(_LoopServer(config), sock)
    log.info("%s metrics on http://%s:%d/metrics, readiness on /ready", metrics.stage, host, port)
    return server
