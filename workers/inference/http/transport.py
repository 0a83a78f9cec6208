"""An ``httpx.AsyncBaseTransport`` for the LLM calls: HTTP/1.1 over asyncio protocols, kept-alive connections.

Why: httpx's default transport (httpcore over anyio) costs most of the inference worker's CPU, about 0.7 ms
of the 1.0 ms per result measured with the zero-latency replay server (encode/httpx#3215; on top of it,
without ``sniffio`` installed, httpcore re-runs a failing ``import sniffio`` several times per request). This
transport parses the response in the protocol's ``data_received`` callback (llhttp through httptools, see
`workers.inference.http.http1`) and wakes the caller once per response. httpx stays the client:
``httpx.AsyncClient(transport=AsyncioTransport(...))`` builds the requests (headers, JSON, auth) and decodes
the responses (content encodings, ``.json()``), and its ``Timeout`` (carried in each request's ``timeout``
extension) applies here.

What it does and does not do:

* HTTP/1.1 (HTTP/1.0 responses are read too), ``http`` and ``https`` (TLS with the default verified context
  unless one is given); no proxies, no HTTP/2, no upgrades (``101`` is a protocol error).
* Request bodies: buffered, sent with Content-Length, or chunk-encoded when httpx chose
  ``Transfer-Encoding: chunked``. Response bodies: Content-Length, chunked (trailers skipped), or read to
  the end of the connection; no body for HEAD, 1xx, 204 and 304. The body is read whole before the
  response is returned (LLM completions are not streamed here), at most ``max_body_bytes``.
* Connections are reused while the server keeps them alive, for at most ``keepalive_expiry`` seconds idle;
  at most ``max_connections`` are open (waiting longer than the pool timeout raises ``httpx.PoolTimeout``).
* Errors are httpx's: ``ConnectTimeout``/``ReadTimeout``/``WriteTimeout``/``PoolTimeout`` (all
  ``httpx.TimeoutException``), ``ConnectError``/``ReadError``/``WriteError``/``RemoteProtocolError`` (all
  ``httpx.TransportError``). The read timeout is the longest silence while waiting for the response, as
  in httpcore. A connection that was cancelled, timed out or failed mid-request is closed, never reused.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any

import httpx

from workers.inference.http.connection import Connection
from workers.inference.http.http1 import DEFAULT_MAX_BODY_BYTES, ResponseParser, request_head


class AsyncioTransport(httpx.AsyncBaseTransport):
    """See the module docstring. One instance may serve many concurrent requests (one per connection)."""

    def __init__(
        self,
        limits: httpx.Limits | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        limits = limits or httpx.Limits()
        self.max_connections = limits.max_connections
        keepalive = limits.max_keepalive_connections
        self.max_keepalive = keepalive if keepalive is not None else (self.max_connections or 1 << 30)
        self.keepalive_expiry = limits.keepalive_expiry
        self.max_body_bytes = max_body_bytes
        self._ssl = ssl_context
        self._idle: dict[tuple[bytes, bytes, int], list[Connection]] = {}
        self._idle_count = 0
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all: set[Connection] = set()
        self._closed = False
        self.connections_opened = 0

    # pool
    def _take_idle(self, key: tuple[bytes, bytes, int], now: float) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            if (
                conn.closed
                or not conn.reusable
                or (self.keepalive_expiry is not None and now - conn.idle_since > self.keepalive_expiry)
            ):
                self._discard(conn)
                continue
            return conn
        return None

    def _discard(self, conn: Connection) -> None:
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _evict_other_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                conn = idle.pop(0)
                self._idle_count -= 1
                self._discard(conn)
                return True
        return False

    async def _acquire(self, key: tuple[bytes, bytes, int], timeouts: dict[str, Any]) -> Connection:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        pool_timeout = timeouts.get("pool")
        while True:
            if self._closed:
                raise httpx.ConnectError("transport is closed")
            conn = self._take_idle(key, loop.time())
            if conn is not None:
                return conn
            if self.max_connections is None or self._open < self.max_connections or self._evict_other_idle():
                return await self._connect(loop, key, timeouts.get("connect"))
            if deadline is None and pool_timeout is not None:
                deadline = loop.time() + pool_timeout
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                async with asyncio.timeout_at(deadline):
                    await fut
            except BaseException as exc:
                if fut.done() and not fut.cancelled():
                    self._wake_waiter()  # pass on the wake-up this task will not use
                else:
                    fut.cancel()
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("timed out waiting for a connection from the pool") from None
                raise

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, key: tuple[bytes, bytes, int], timeout: float | None
    ) -> Connection:
        scheme, host, port = key
        ctx: ssl.SSLContext | None = None
        if scheme == b"https":
            ctx = self._ssl or ssl.create_default_context()
        conn = Connection(loop, key)
        self._open += 1
        self._all.add(conn)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: conn,
                    host.decode("ascii"),
                    port,
                    ssl=ctx,
                    server_hostname=host.decode("ascii") if ctx else None,
                )
        except TimeoutError:
            self._discard(conn)
            raise httpx.ConnectTimeout(f"timed out connecting to {host.decode()}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            self._discard(conn)
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._discard(conn)
            raise
        self.connections_opened += 1
        return conn

    def _release(self, conn: Connection) -> None:
        if self._closed or conn.closed or not conn.reusable or self._idle_count >= self.max_keepalive:
            self._discard(conn)
            return
        conn.idle_since = conn.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._idle_count += 1
        self._wake_waiter()

    # httpx interface
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme.decode(errors='replace')!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        key = (scheme, url.raw_host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = request_head(request)
        chunked = False
        for name, value in request.headers.raw:
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
        parser = ResponseParser(request.method == "HEAD", self.max_body_bytes)
        conn = await self._acquire(key, timeouts)
        ok = False
        try:
            conn.buf.clear()
            conn.parser = parser
            conn.waiter = conn.loop.create_future()
            conn.last_read = conn.loop.time()
            await conn.send(head, body, timeouts.get("write"))
            await conn.receive(timeouts.get("read"))
            ok = parser.keep_alive and not conn.buf
        finally:
            conn.parser = None
            conn.waiter = None
            if ok:
                self._release(conn)
            else:
                self._discard(conn)
        return httpx.Response(
            parser.status,
            headers=parser.headers,
            stream=httpx.ByteStream(parser.body),
            extensions={"http_version": parser.http_version, "reason_phrase": parser.reason},
            request=request,
        )

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._all):
            self._discard(conn)
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
