"""workers.inference.http.http1 and .transport: the response parser alone, then the transport under httpx against
scripted loopback servers (keep-alive, framing, timeouts, errors, pool limits, cancellation)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from workers.inference.client import LLMClient, RetryPolicy, make_http_clients
from workers.inference.http.http1 import ResponseParser
from workers.inference.http.transport import AsyncioTransport
from workers.settings import InferenceSettings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def feed_all(parser: ResponseParser, data: bytes, step: int | None = None) -> bool:
    buf = bytearray()
    done = False
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        buf += data[i : i + step]
        done = parser.feed(buf)
    return done


# ---- the parser ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [None, 1, 7])
def test_content_length_response_in_any_pieces(step: int | None) -> None:
    p = ResponseParser()
    raw = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": [1]}\n'
    assert feed_all(p, raw, step)
    assert (p.status, p.reason, p.http_version, p.body, p.keep_alive) == (
        200,
        b"OK",
        b"HTTP/1.1",
        b'{"a": [1]}\n',
        True,
    )
    assert p.headers == [(b"Content-Type", b"application/json"), (b"Content-Length", b"11")]


@pytest.mark.parametrize("step", [None, 1, 3])
def test_chunked_body_with_extensions_and_trailers(step: int | None) -> None:
    p = ResponseParser()
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n"
    )
    assert feed_all(p, raw, step)
    assert p.body == b"Wikipedia in\r\n\r\nchunks." and p.keep_alive


def test_interim_1xx_then_final_response() -> None:
    p = ResponseParser()
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    assert feed_all(p, raw) and (p.status, p.body) == (201, b"ok")


def test_no_body_for_head_204_and_304() -> None:
    head = ResponseParser(head_request=True)
    assert feed_all(head, b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n") and head.body == b""
    for code in (204, 304):
        p = ResponseParser()
        assert feed_all(p, b"HTTP/1.1 %d X\r\nContent-Length: 3\r\n\r\n" % code) and p.body == b""


def test_keep_alive_rules() -> None:
    def keep(raw: bytes) -> bool:
        p = ResponseParser()
        assert feed_all(p, raw)
        return p.keep_alive

    assert keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") is True
    assert keep(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") is False
    assert keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n") is False
    assert keep(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n") is True


def test_body_to_end_of_connection() -> None:
    p = ResponseParser()
    assert not feed_all(p, b"HTTP/1.1 200 OK\r\n\r\npart one, ")
    buf = bytearray(b"part two")
    assert not p.feed(buf)
    assert p.eof() and p.body == b"part one, part two" and p.keep_alive is False


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"HTTP/2 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY", "chunk not followed by CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    ],
)
def test_malformed_responses_are_protocol_errors(raw: bytes, message: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match=message):
        feed_all(ResponseParser(), raw)


def test_limits_on_head_and_body_size() -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="head too large"):
        feed_all(ResponseParser(), b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000)
    with pytest.raises(httpx.RemoteProtocolError, match="over 10 bytes"):
        feed_all(ResponseParser(max_body_bytes=10), b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")


@pytest.mark.parametrize("step", [None, 1, 2, 3, 5])
@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\r\n\r\n\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    ],
)
def test_bytes_after_the_response_stay_in_the_buffer(raw: bytes, step: int | None) -> None:
    for extra in (b"HTTP/1.1 200 OK\r\n\r\n", b"\r\n", b"junk"):
        p = ResponseParser()
        buf = bytearray()
        data = raw + extra
        done = False
        for i in range(0, len(data), step or len(data)):
            buf += data[i : i + (step or len(data))]
            done = p.feed(buf)
            if done:
                buf += data[i + (step or len(data)) :]
                break
        assert done and bytes(buf) == extra
        assert p.feed(buf) and bytes(buf) == extra  # complete: feeding again consumes nothing


def test_head_response_leaves_what_follows_and_keeps_alive() -> None:
    p = ResponseParser(head_request=True)
    buf = bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert p.feed(buf) and p.body == b"" and p.keep_alive and buf == b"0\r\n\r\n"


def test_trailers_are_not_headers() -> None:
    p = ResponseParser()
    assert feed_all(p, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: 1\r\n\r\n")
    assert p.headers == [(b"Transfer-Encoding", b"chunked")] and p.body == b"a"


def test_reason_and_header_values_as_received_less_surrounding_whitespace() -> None:
    p = ResponseParser()
    assert feed_all(p, b"HTTP/1.1 404 Not  Found\r\nX-A:  a b \t\r\nContent-Length: 0\r\n\r\n", 1)
    assert (p.status, p.reason, p.headers[0]) == (404, b"Not  Found", (b"X-A", b"a b"))
    p = ResponseParser()
    assert feed_all(p, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n") and p.reason == b""


def test_interim_response_before_an_http_1_0_final_one() -> None:
    p = ResponseParser()
    raw = b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert feed_all(p, raw, 4) and (p.status, p.http_version, p.body, p.keep_alive) == (200, b"HTTP/1.0", b"ok", False)


def test_body_to_end_of_connection_for_non_chunked_transfer_coding_is_refused_and_eof_after_interim() -> None:
    p = ResponseParser()
    assert not feed_all(p, b"HTTP/1.1 100 Continue\r\n\r\n")
    assert p.started
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        p.eof()


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"HTTP/2.0 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "unsupported Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n", "bad chunk"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\r\n\r\n", None),  # fine: the extra stays in buf
    ],
)
def test_more_malformed_responses(raw: bytes, message: str | None) -> None:
    if message is None:
        buf = bytearray(raw)
        assert ResponseParser().feed(buf) and buf == b"\r\n\r\n"
        return
    p = ResponseParser()
    for _ in range(2):  # and it stays failed
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            feed_all(p, raw)


def test_limits_on_chunked_bodies_and_framing() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(httpx.RemoteProtocolError, match="over 10 bytes"):
        feed_all(ResponseParser(max_body_bytes=10), chunked + b"6\r\nabcdef\r\n6\r\nabcdef\r\n", 5)
    with pytest.raises(httpx.RemoteProtocolError, match="chunk framing too large"):
        feed_all(ResponseParser(), chunked + b"1;" + b"x" * 70_000)
    with pytest.raises(httpx.RemoteProtocolError, match="chunk framing too large"):
        feed_all(ResponseParser(), chunked + b"0\r\n" + b"X-T: 1\r\n" * 10_000, 4096)
    with pytest.raises(httpx.RemoteProtocolError, match="head too large"):  # interim heads count too
        feed_all(ResponseParser(), b"HTTP/1.1 100 Continue\r\n\r\n" * 3000)
    p = ResponseParser(max_body_bytes=12)
    assert feed_all(p, chunked + b"6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n", 3) and len(p.body) == 12


def test_eof_before_or_inside_a_response() -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        ResponseParser().eof()
    p = ResponseParser()
    feed_all(p, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        p.eof()


# ---- the transport under httpx ----------------------------------------------------------------------------


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running ``handler`` per connection; yields its base URL and a list whose length is
    the number of connections accepted."""
    accepted: list[int] = []
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        srv.close()
        for t in list(tasks):
            t.cancel()
        await srv.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return lines[0], headers, body


def echo(extra: bytes = b"", close_after: int | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            line, headers, body = await read_request(reader)
            reply = json.dumps({"line": line.decode(), "host": headers[b"host"].decode(), "body": body.decode()})
            writer.write(b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(reply), reply.encode()))
            await writer.drain()
            served += 1
            if close_after is not None and served >= close_after:
                return

    return handle


def http_client(**limits: Any) -> httpx.AsyncClient:
    timeout = limits.pop("timeout", httpx.Timeout(5.0))
    return httpx.AsyncClient(transport=AsyncioTransport(httpx.Limits(**limits)), timeout=timeout)


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with server(echo()) as (url, accepted), http_client() as c:
        for i in range(5):
            r = await c.post(f"{url}/v1/chat/completions?x={i}", json={"i": i})
            assert r.status_code == 200 and r.http_version == "HTTP/1.1"
            got = r.json()
            assert got["line"] == f"POST /v1/chat/completions?x={i} HTTP/1.1"
            assert got["host"] == url.removeprefix("http://") and json.loads(got["body"]) == {"i": i}
        assert len(accepted) == 1


async def test_connection_close_is_honoured() -> None:
    async with server(echo(b"Connection: close\r\n", close_after=1)) as (url, accepted), http_client() as c:
        for _ in range(3):
            assert (await c.get(url)).status_code == 200
        assert len(accepted) == 3


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    async with server(echo(close_after=1)) as (url, accepted), http_client() as c:
        assert (await c.get(url)).status_code == 200
        await asyncio.sleep(0.05)  # the server has closed it meanwhile
        assert (await c.get(url)).status_code == 200
        assert len(accepted) == 2


async def test_idle_connections_expire() -> None:
    async with server(echo()) as (url, accepted), http_client(keepalive_expiry=0.05) as c:
        await c.get(url)
        await asyncio.sleep(0.1)
        await c.get(url)
        assert len(accepted) == 2


async def test_chunked_and_gzip_responses_are_decoded() -> None:
    payload = json.dumps({"choices": [{"message": {"content": "B" * 3000}}]}).encode()
    packed = gzip.compress(payload)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(packed[i : i + 500]), packed[i : i + 500]) for i in range(0, len(packed), 500)
        )
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(chunks), 333):  # in pieces, with pauses
            writer.write(chunks[i : i + 333])
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with server(handle) as (url, _), http_client() as c:
        r = await c.post(url, json={})
        assert r.json() == json.loads(payload)


async def test_chunked_request_body() -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        seen.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with server(handle) as (url, _), http_client() as c:
        r = await c.post(url, content=parts())
        assert r.status_code == 200
    assert b"transfer-encoding: chunked" in seen[0].lower()
    assert seen[1] == b"b\r\nhello world\r\n0\r\n\r\n"


async def test_read_timeout_is_silence_not_total_time() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for b in b"abcdef":  # 6 x 60 ms: longer than the read timeout in total, never silent that long
            await asyncio.sleep(0.06)
            writer.write(bytes([b]))
            await writer.drain()
        await reader.read()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    timeout = httpx.Timeout(5.0, read=0.2)
    async with server(drip) as (url, _), http_client(timeout=timeout) as c:
        assert (await c.get(url)).content == b"abcdef"
    async with server(hang) as (url, _), http_client(timeout=timeout) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await c.get(url)
        assert 0.15 < time.monotonic() - started < 1.0
        assert c._transport._open == 0  # type: ignore[attr-defined]  # the timed-out connection is closed


async def test_connection_errors_are_transport_errors() -> None:
    async with server(echo()) as (url, _):
        pass  # closed: nothing listens there now
    async with http_client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(url)


async def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def never(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(10)

    monkeypatch.setattr(loop, "create_connection", never)
    async with http_client(timeout=httpx.Timeout(5.0, connect=0.1)) as c:
        with pytest.raises(httpx.ConnectTimeout):
            await c.get("http://127.0.0.1:9/")
        assert c._transport._open == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "reply, error",
    [
        (b"", "without sending a response"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial', "complete message body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", "complete message body"),
        (b"garbage\r\n\r\n", "bad status line"),
    ],
)
async def test_dropped_or_broken_responses(reply: bytes, error: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with server(handle) as (url, _), http_client() as c:
        with pytest.raises(httpx.RemoteProtocolError, match=error) as info:
            await c.post(url, json={})
        assert isinstance(info.value, httpx.TransportError)
        assert c._transport._open == 0  # type: ignore[attr-defined]


async def test_at_most_max_connections_and_pool_timeout() -> None:
    live = [0]
    peak = [0]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            live[0] += 1
            peak[0] = max(peak[0], live[0])
            await asyncio.sleep(0.05)
            live[0] -= 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with server(slow) as (url, accepted), http_client(max_connections=2) as c:
        rs = await asyncio.gather(*(c.get(url) for _ in range(8)))
        assert [r.text for r in rs] == ["ok"] * 8 and peak[0] == 2 and len(accepted) == 2
    async with server(slow) as (url, _), http_client(max_connections=1, timeout=httpx.Timeout(5.0, pool=0.02)) as c:
        first = asyncio.create_task(c.get(url))
        await asyncio.sleep(0.01)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(url)
        assert (await first).text == "ok"


async def test_cancelled_request_closes_its_connection() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with server(hang) as (url, _), http_client() as c:
        task = asyncio.create_task(c.get(url))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert c._transport._open == 0  # type: ignore[attr-defined]


async def test_llm_client_retries_a_dropped_connection_on_the_real_transport() -> None:
    calls = [0]

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            calls[0] += 1
            if calls[0] == 1:
                return  # drop the first request without answering
            body = b'{"choices": [{"message": {"content": "A"}}]}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async def no_sleep(s: float) -> None:
        pass

    clients = make_http_clients(InferenceSettings(connect_timeout_s=1.0, read_timeout_s=2.0, concurrency=4), "k")
    assert len(clients) == 1 and isinstance(clients[0]._transport, AsyncioTransport)  # type: ignore[attr-defined]
    async with server(flaky) as (url, _), clients[0] as http:
        llm = LLMClient(http, RetryPolicy(3, 0.01, 0.01), sleep=no_sleep)
        c = await llm.complete(url + "/v1", {"model": "m"})
        assert c.attempts == 2 and c.body["choices"][0]["message"]["content"] == "A" and calls[0] == 2
