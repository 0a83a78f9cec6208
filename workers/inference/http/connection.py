"""One HTTP/1.1 connection of `workers.inference.http.transport`: an asyncio protocol that feeds what it receives to
the request's `workers.inference.http.http1.ResponseParser` and wakes the request when the response is complete (or
failed: parse error, connection lost, read timeout)."""

from __future__ import annotations

import asyncio

import httpx

from workers.inference.http.http1 import ResponseParser

_WRITE_DIRECT_LIMIT = 64 * 1024  # bodies above this are written apart from the head (no join copy)


class Connection(asyncio.Protocol):
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
