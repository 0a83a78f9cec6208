"""The app's own ASGI middleware, around every request: the key of a ``/v1`` route, the body limits, the
metrics, and the last word on an error.

* ``/v1/*`` needs a key (``workers.api.auth``): the owner goes into ``scope["state"]["owner"]``
  (``request.state.owner``). A request without one is answered 401 before any route, or its body, is read.
* Bodies are counted as they are received (a Content-Length is checked first, but not trusted): an upload
  (``POST /v1/files``) may be ``max_file_bytes`` plus its multipart framing, anything else ``max_body_bytes``;
  beyond, 413 (the receive raises, the route's handler answers).
* An exception no handler took is logged with its route and answered 500 (``server_error``, no detail);
  a Redis that does not answer is 503.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.api.auth import Keys
from workers.api.metrics import UNMATCHED, ApiMetrics
from workers.api.problems import ApiError, internal_error, too_large, unavailable
from workers.settings import ApiSettings

log = logging.getLogger(__name__)

MULTIPART_SLACK = 64 * 1024  # an upload's boundaries, part headers and its purpose field
UPLOAD_PATH = "/v1/files"


def route_of(scope: Scope) -> str:
    """The route template that matched (``/v1/files/{file_id}``), never the path itself."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def body_limit(api: ApiSettings, scope: Scope) -> tuple[int, str]:
    if scope["method"] == "POST" and scope["path"] == UPLOAD_PATH:
        return api.max_file_bytes + MULTIPART_SLACK, "The upload"
    return api.max_body_bytes, "The request body"


class Guard:
    def __init__(self, app: ASGIApp, api: ApiSettings, keys: Keys, metrics: ApiMetrics) -> None:
        self.app = app
        self.api = api
        self.keys = keys
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = False

        async def tracked(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = int(message["status"]), True
            await send(message)

        try:
            await self._call(scope, receive, tracked)
        except ApiError as exc:
            if not sent:
                await exc.response()(scope, receive, tracked)
        except ClientDisconnect:
            status = 499  # the client went away mid-request (an upload cut short): nothing to answer
            log.info("%s %s: the client disconnected", scope["method"], route_of(scope))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.error("%s %s: Redis did not answer: %s", scope["method"], route_of(scope), exc)
            if not sent:
                await unavailable().response()(scope, receive, tracked)
        except Exception:
            log.exception("%s %s failed", scope["method"], route_of(scope))
            if not sent:
                await internal_error().response()(scope, receive, tracked)
        finally:
            self.metrics.observe(route_of(scope), scope["method"], status, time.perf_counter() - started)

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if path == "/v1" or path.startswith("/v1/"):
            state: dict[str, Any] = scope.setdefault("state", {})
            state["owner"] = self.keys.owner(headers.get("authorization"))
        limit, what = body_limit(self.api, scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(what, limit)
        await self.app(scope, _Limited(receive, limit, what), send)


class _Limited:
    """A receive that raises 413 once the bytes received pass ``limit``."""

    def __init__(self, receive: Receive, limit: int, what: str) -> None:
        self.receive = receive
        self.limit = limit
        self.what = what
        self.total = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.total += len(message.get("body", b""))
            if self.total > self.limit:
                raise too_large(self.what, self.limit)
        return message
