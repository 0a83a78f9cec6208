"""An ``httpx.AsyncBaseTransport`` for the LLM calls: HTTP/1.1 over asyncio protocols, kept-alive connections.

Why: httpx's default transport (httpcore over anyio) costs most of the inference worker's CPU, about 0.7 ms
of the 1.0 ms per result measured with the zero-latency replay server (encode/httpx#3215; on top of it,
without ``sniffio`` installed, httpcore re-runs a failing ``import sniffio`` several times per request). This
transport parses the response in the protocol's ``data_received`` callback and wakes the caller once per
response. httpx stays the client: ``httpx.AsyncClient(transport=AsyncioTransport(...))`` builds the requests
(headers, JSON, auth) and decodes the responses (content encodings, ``.json()``), and its ``Timeout`` (carried
in each request's ``timeout`` extension) applies here.

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

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})
_WRITE_DIRECT_LIMIT = 64 * 1024  # bodies above this are written apart from the head (no join copy)


class ResponseParser:
    """Incremental HTTP/1.x response parser over one connection's receive buffer (pure, no I/O).

    ``feed`` consumes what it can from ``buf`` and returns True once the final (non-1xx) response is
    complete; then ``status``, ``reason``, ``http_version``, ``headers``, ``body`` and ``keep_alive`` are set.
    ``eof`` tells it the peer closed: it completes a body that runs to the end of the connection, and
    raises ``httpx.RemoteProtocolError`` for anything cut short.
    """

    __slots__ = (
        "_chunks",
        "_head_request",
        "_max_body",
        "_remaining",
        "_state",
        "body",
        "headers",
        "http_version",
        "keep_alive",
        "reason",
        "status",
    )

    # states
    _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _TO_EOF, _DONE = range(8)

    def __init__(self, head_request: bool = False, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._head_request = head_request
        self._max_body = max_body_bytes
        self._state = self._HEAD
        self._chunks: list[bytes] = []
        self._remaining = 0
        self.status = 0
        self.reason = b""
        self.http_version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = False

    @property
    def started(self) -> bool:
        """Some of the response (status line, or a 1xx before it) has been parsed."""
        return self.status != 0

    def feed(self, buf: bytearray) -> bool:
        while True:
            state = self._state
            if state == self._HEAD:
                end = buf.find(_HEAD_END)
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("response head too large")
                    return False
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._parse_head(head)
                continue
            if state == self._LENGTH:
                if len(buf) < self._remaining:
                    if buf:
                        self._take(buf, len(buf))
                    return False
                self._take(buf, self._remaining)
                self._finish()
                return True
            if state == self._CHUNK_SIZE:
                end = buf.find(_CRLF)
                if end < 0:
                    if len(buf) > 1024:
                        raise httpx.RemoteProtocolError("chunk size line too long")
                    return False
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"bad chunk size {line[:20]!r}") from None
                if size < 0 or (line[:1] in (b"+", b"-")):
                    raise httpx.RemoteProtocolError(f"bad chunk size {line[:20]!r}")
                if size == 0:
                    self._state = self._TRAILERS
                else:
                    self._check_size(size)
                    self._remaining = size
                    self._state = self._CHUNK_DATA
                continue
            if state == self._CHUNK_DATA:
                if not buf:
                    return False
                n = min(len(buf), self._remaining)
                self._take(buf, n)
                if self._remaining:
                    return False
                self._state = self._CHUNK_END
                continue
            if state == self._CHUNK_END:
                if len(buf) < 2:
                    return False
                if buf[:2] != _CRLF:
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
                del buf[:2]
                self._state = self._CHUNK_SIZE
                continue
            if state == self._TRAILERS:
                end = buf.find(_CRLF)
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("trailers too large")
                    return False
                del buf[: end + 2]
                if end == 0:  # the empty line after the (ignored) trailers
                    self._finish()
                    return True
                continue
            if state == self._TO_EOF:
                if buf:
                    self._take(buf, len(buf))
                return False
            return True  # _DONE

    def eof(self) -> bool:
        """The peer closed the connection: True if that completes the response; raises if it cuts it short."""
        if self._state == self._DONE:
            return True
        if self._state == self._TO_EOF:
            self.keep_alive = False
            self._finish()
            return True
        if self._state == self._HEAD and not self.started:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def _take(self, buf: bytearray, n: int) -> None:
        self._chunks.append(bytes(buf[:n]))
        del buf[:n]
        self._remaining -= n

    def _check_size(self, more: int) -> None:
        if sum(len(c) for c in self._chunks) + more > self._max_body:
            raise httpx.RemoteProtocolError(f"response body over {self._max_body} bytes")

    def _finish(self) -> None:
        chunks = self._chunks
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._state = self._DONE

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(_CRLF)
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise httpx.RemoteProtocolError(f"bad status line {lines[0][:60]!r}")
        status = int(code)
        headers: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        chunked = False
        connection = b""
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise httpx.RemoteProtocolError(f"bad header line {line[:60]!r}")
            value = value.strip()
            headers.append((name, value))
            lname = name.lower()
            if lname == b"content-length":
                if length is not None and length != value:
                    raise httpx.RemoteProtocolError("conflicting Content-Length headers")
                length = value
            elif lname == b"transfer-encoding":
                codings = [c.strip() for c in value.lower().split(b",")]
                chunked = codings[-1] == b"chunked"
                if not chunked:
                    raise httpx.RemoteProtocolError(f"unsupported Transfer-Encoding {value[:40]!r}")
            elif lname == b"connection":
                connection = value.lower()
        if 100 <= status < 200:
            if status == 101:
                raise httpx.RemoteProtocolError("101 Switching Protocols is not supported")
            self.status = status  # an interim response: the final one follows
            return
        self.status, self.reason, self.http_version, self.headers = status, reason, version, headers
        tokens = {t.strip() for t in connection.split(b",")} if connection else set()
        self.keep_alive = b"keep-alive" in tokens if version == b"HTTP/1.0" else b"close" not in tokens
        if self._head_request or status in _NO_BODY_STATUS:
            self._finish()
        elif chunked:
            self._state = self._CHUNK_SIZE
        elif length is not None:
            if not length.isdigit():
                raise httpx.RemoteProtocolError(f"bad Content-Length {length[:20]!r}")
            self._remaining = int(length)
            self._check_size(self._remaining)
            self._state = self._LENGTH
            if self._remaining == 0:
                self._finish()
        else:
            self.keep_alive = False
            self._state = self._TO_EOF


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; runs at most one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[bytes, bytes, int]) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.reusable = True
        self.idle_since = 0.0
        self.last_read = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes while idle: the connection's state is unknown, never reuse it
            self.reusable = False
            self.close()
            return
        self.last_read = self.loop.time()
        self.buf += data
        try:
            done = parser.feed(self.buf)
        except httpx.RemoteProtocolError as exc:
            self._fail(exc)
            return
        if done:
            self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        parser = self.parser
        if parser is not None and self.waiter is not None and not self.waiter.done():
            try:
                if parser.eof():
                    self._wake()
                    return
            except httpx.RemoteProtocolError as err:
                if exc is not None:
                    self._fail(httpx.ReadError(f"{err} ({type(exc).__name__}: {exc})"))
                else:
                    self._fail(err)
                return
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(httpx.WriteError(f"connection lost while writing: {exc}"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # used by the transport
    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    async def send(self, data: bytes, body: bytes, write_timeout: float | None) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise httpx.WriteError("connection closed before the request was sent")
        try:
            if body and len(body) > _WRITE_DIRECT_LIMIT:
                transport.write(data)
                transport.write(body)
            else:
                transport.write(data + body if body else data)
        except (OSError, RuntimeError) as exc:
            raise httpx.WriteError(f"{type(exc).__name__}: {exc}") from exc
        if self._write_paused:
            self._drain = self.loop.create_future()
            try:
                async with asyncio.timeout(write_timeout):
                    await self._drain
            except TimeoutError:
                raise httpx.WriteTimeout("timed out writing the request") from None
            finally:
                self._drain = None

    async def receive(self, read_timeout: float | None) -> None:
        """Wait until the parser holds the whole response; silence longer than ``read_timeout`` fails."""
        waiter = self.waiter
        assert waiter is not None
        if waiter.done():  # the whole response (or the failure) came while the request was being written
            waiter.result()
            return
        if self.closed:  # lost before this request owned the connection: data_received never saw it
            self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
            waiter.result()
            return
        handle: asyncio.TimerHandle | None = None
        if read_timeout is not None:

            def expire() -> None:
                nonlocal handle
                if waiter.done():
                    return
                left = self.last_read + read_timeout - self.loop.time()
                if left > 0:
                    handle = self.loop.call_later(left, expire)
                else:
                    self._fail(httpx.ReadTimeout("timed out waiting for the response"))

            handle = self.loop.call_later(read_timeout, expire)
        try:
            await waiter
        finally:
            if handle is not None:
                handle.cancel()


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
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self._idle_count = 0
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all: set[_Connection] = set()
        self._closed = False
        self.connections_opened = 0

    # pool
    def _take_idle(self, key: tuple[bytes, bytes, int], now: float) -> _Connection | None:
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

    def _discard(self, conn: _Connection) -> None:
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

    async def _acquire(self, key: tuple[bytes, bytes, int], timeouts: dict[str, Any]) -> _Connection:
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
    ) -> _Connection:
        scheme, host, port = key
        ctx: ssl.SSLContext | None = None
        if scheme == b"https":
            ctx = self._ssl or ssl.create_default_context()
        conn = _Connection(loop, key)
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

    def _release(self, conn: _Connection) -> None:
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
        head = _request_head(request)
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


def _request_head(request: httpx.Request) -> bytes:
    target = request.url.raw_path or b"/"
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        parts += (name, b": ", value, _CRLF)
    parts.append(_CRLF)
    return b"".join(parts)
