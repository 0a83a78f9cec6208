"""HTTP/1.x framing for `workers.inference.http.transport`: the response parser and the request head (no I/O).

The response is parsed by llhttp (Node's C parser) through ``httptools.HttpResponseParser``; this module
adds what httptools leaves to its caller:

* Message boundaries. llhttp parses whatever it is given and, on a kept-alive connection, goes on to the
  next message; httptools reports no position. So llhttp is only ever fed bytes of the current response:
  the head up to its blank line, a Content-Length body exactly, a chunked body up to each ``CRLF CRLF``
  (where a chunked message can end), holding back a trailing partial ``CRLF CRLF``. Bytes after the
  response stay in the buffer, and the transport does not reuse a connection that has any.
* HEAD responses: httptools cannot tell llhttp that a response has no body (MagicStack/httptools#47;
  returning 1 from ``on_headers_complete`` is not passed through), so the parser stops at the end of the
  head itself. It also stops there for a 1xx interim response and starts a fresh llhttp parser for the
  final one (llhttp would refuse a response after an HTTP/1.0 interim one).
* End of connection: httptools has no ``llhttp_finish``; ``eof`` completes a body that runs to the end of the
  connection and reports anything else cut short.
* Limits: the head (interim heads included) at most ``MAX_HEAD_BYTES``, the body at most ``max_body_bytes``,
  chunk framing (size lines, extensions, trailers) at most ``MAX_HEAD_BYTES`` plus 1 KiB per chunk.
* Policy llhttp does not have: only HTTP/1.0 and 1.1, no 101 (upgrades are not supported), no
  Transfer-Encoding other than chunked last (llhttp would read such a body to the end of the connection).

Every error is an ``httpx.RemoteProtocolError``; llhttp's reason is kept in parentheses.
"""

from __future__ import annotations

import httptools
import httpx

MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
CHUNK_FRAMING_BYTES = 1024  # allowance per chunk for its size line and extensions
_COPY_LIMIT = 16 * 1024  # a part of the buffer up to this size goes to llhttp as a copy, not a memoryview
_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_NO_BODY_STATUS = frozenset({204, 304})
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0"}
_STATUS_LINE_WORDS = ("response line", "status", "version", "HTTP/", "dot")  # in llhttp's reasons

# phases
_HEAD, _INTERIM, _LENGTH, _CHUNKED, _TO_EOF, _DONE, _FAILED = range(7)


def _feedable(buf: bytearray) -> tuple[int, bool]:
    """How many leading bytes of ``buf`` can go to llhttp without passing the end of a ``CRLF CRLF``, and
    whether that end is among them. A trailing partial ``CRLF CRLF`` is held back for the next call."""
    end = buf.find(_HEAD_END)
    if end >= 0:
        return end + 4, True
    n = len(buf)
    if buf.endswith(b"\r\n\r"):
        return n - 3, False
    if buf.endswith(_CRLF):
        return n - 2, False
    if buf.endswith(b"\r"):
        return n - 1, False
    return n, False


class ResponseParser:
    """Incremental HTTP/1.x response parser over one connection's receive buffer.

    ``feed`` consumes what belongs to the response from ``buf`` and returns True once the final (non-1xx)
    response is complete; then ``status``, ``reason``, ``http_version``, ``headers``, ``body`` and
    ``keep_alive`` are set, and whatever follows the response is left in ``buf``. ``eof`` tells it the peer
    closed: it completes a body that runs to the end of the connection, and raises
    ``httpx.RemoteProtocolError`` for anything cut short.
    """

    __slots__ = (
        "_body_len",
        "_chunk_count",
        "_chunks",
        "_error",
        "_framing",
        "_head_bytes",
        "_head_request",
        "_length",
        "_llhttp",
        "_max_body",
        "_phase",
        "_remaining",
        "_status_line",
        "_transfer_encoding",
        "body",
        "headers",
        "http_version",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(self, head_request: bool = False, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._head_request = head_request
        self._max_body = max_body_bytes
        self._phase = _HEAD
        self._head_bytes = 0  # head bytes fed so far, interim heads included
        self._chunks: list[bytes] = []
        self._body_len = 0
        self._remaining = 0  # Content-Length bytes not yet fed
        self._framing = 0  # chunked: bytes fed that are not body
        self._chunk_count = 0
        self._error: httpx.RemoteProtocolError | None = None
        self.status = 0
        self.http_version = b"HTTP/1.1"
        self.keep_alive = False
        self.body = b""
        self._new_message()

    def _new_message(self) -> None:
        self._llhttp: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._status_line = False
        self._length: bytes | None = None
        self._transfer_encoding = b""
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []

    @property
    def started(self) -> bool:
        """Some of the response (a whole head: the final one, or a 1xx before it) has been parsed."""
        return self.status != 0

    def feed(self, buf: bytearray) -> bool:
        while True:
            phase = self._phase
            if phase == _LENGTH:
                n = min(len(buf), self._remaining)
                if n:
                    self._remaining -= n
                    self._execute(buf, n)
                return self._phase == _DONE
            if phase == _HEAD:
                n, at_end = _feedable(buf)
                self._head_bytes += n
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise self._fail(httpx.RemoteProtocolError("response head too large"))
                if n:
                    self._execute(buf, n)
                if not at_end:
                    return False
                if self._phase == _HEAD:  # a blank line that did not end the head (cannot happen in llhttp)
                    raise self._fail(httpx.RemoteProtocolError("bad response head"))
                if self._phase == _INTERIM:  # the final response follows, parsed afresh
                    self._new_message()
                    self._phase = _HEAD
                continue
            if phase == _CHUNKED:
                n, _ = _feedable(buf)
                if not n:
                    return False
                self._framing += n
                self._execute(buf, n)
                if self._phase == _DONE:
                    return True
                if self._framing - self._body_len > MAX_HEAD_BYTES + CHUNK_FRAMING_BYTES * self._chunk_count:
                    raise self._fail(httpx.RemoteProtocolError("chunk framing too large (extensions or trailers)"))
                continue
            if phase == _TO_EOF:
                if buf:
                    self._execute(buf, len(buf))
                return False
            if phase == _FAILED:
                assert self._error is not None
                raise self._error
            return True  # _DONE

    def eof(self) -> bool:
        """The peer closed the connection: True if that completes the response; raises if it cuts it short."""
        if self._phase == _DONE:
            return True
        if self._phase == _TO_EOF:
            self.keep_alive = False
            self._finish()
            self._llhttp = None
            return True
        if self._phase == _HEAD and not self.started:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    # feeding llhttp
    def _execute(self, buf: bytearray, n: int) -> None:
        """Feed the first ``n`` bytes of ``buf`` to llhttp and remove them from ``buf``."""
        llhttp = self._llhttp
        assert llhttp is not None
        try:
            if n == len(buf):
                llhttp.feed_data(buf)
                buf.clear()
            else:
                if n <= _COPY_LIMIT:
                    llhttp.feed_data(buf[:n])
                else:
                    with memoryview(buf) as view, view[:n] as part:
                        llhttp.feed_data(part)
                del buf[:n]
        except httptools.HttpParserError as exc:
            raise self._fail(self._error or self._parse_error(str(exc))) from None
        except httptools.HttpParserUpgrade:  # only for a 101, which on_headers_complete refuses first
            raise self._fail(httpx.RemoteProtocolError("unexpected protocol upgrade")) from None
        if self._phase == _DONE:
            self._llhttp = None  # it holds bound methods of this parser: drop the cycle

    def _fail(self, exc: httpx.RemoteProtocolError) -> httpx.RemoteProtocolError:
        self._error = exc
        self._phase = _FAILED
        self._llhttp = None
        return exc

    def _parse_error(self, reason: str) -> httpx.RemoteProtocolError:
        """An llhttp error as a RemoteProtocolError that says which part of the response was bad."""
        if "Content-Length" in reason:
            conflict = "Duplicate" in reason or "Transfer-Encoding" in reason
            what = "conflicting Content-Length" if conflict else "bad Content-Length"
        elif self._phase == _HEAD:
            if "header" in reason or "start line" in reason:
                what = "bad header line"
            elif any(word in reason for word in _STATUS_LINE_WORDS) or not self._status_line:
                what = "bad status line"
            else:
                what = "bad header line"
        elif "chunk size" in reason:
            what = "bad chunk size"
        elif "after chunk data" in reason:
            what = "chunk not followed by CRLF"
        elif "chunk" in reason:
            what = "bad chunk"
        else:
            what = "bad response"
        return httpx.RemoteProtocolError(f"{what} ({reason})")

    def _callback_error(self, message: str) -> httpx.RemoteProtocolError:
        """Raised from a callback: httptools turns it into a callback error; ``_execute`` raises this one."""
        self._error = httpx.RemoteProtocolError(message)
        return self._error

    def _finish(self) -> None:
        chunks = self._chunks
        self.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._phase = _DONE

    # llhttp callbacks (through httptools; None: not wanted, and cheaper for httptools to look up than absent)
    on_message_begin = None
    on_chunk_complete = None

    def on_status(self, reason: bytes) -> None:
        self._status_line = True
        self.reason += reason  # in pieces when the status line arrives in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        self._status_line = True
        if self._phase != _HEAD:
            return  # chunked trailers: ignored
        value = value.rstrip(b" \t")  # llhttp strips the leading whitespace only
        self.headers.append((name, value))
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            self._length = value  # llhttp checks the digits and refuses a second one
        elif size == 17 and name.lower() == b"transfer-encoding":
            self._transfer_encoding += b"," + value if self._transfer_encoding else value

    def on_headers_complete(self) -> None:
        llhttp = self._llhttp
        assert llhttp is not None
        status = llhttp.get_status_code()
        version = _VERSIONS.get(llhttp.get_http_version())
        if version is None:
            raise self._callback_error(f"bad status line (HTTP/{llhttp.get_http_version()} is not supported)")
        self.status = status
        if status < 200:
            if status == 101:
                raise self._callback_error("101 Switching Protocols is not supported")
            self._phase = _INTERIM  # the final response follows
            return
        self.http_version = version
        self.keep_alive = llhttp.should_keep_alive()
        te = self._transfer_encoding
        if self._head_request or status in _NO_BODY_STATUS:
            self._finish()
        elif te:
            if te.rsplit(b",", 1)[-1].strip().lower() != b"chunked":
                raise self._callback_error(f"unsupported Transfer-Encoding {te[:40]!r}")
            self._phase = _CHUNKED
        elif self._length is not None:
            length = int(self._length)
            if length > self._max_body:
                raise self._callback_error(f"response body over {self._max_body} bytes")
            self._remaining = length
            self._phase = _LENGTH
        else:
            self.keep_alive = False
            self._phase = _TO_EOF

    def on_body(self, data: bytes) -> None:
        self._body_len += len(data)
        if self._body_len > self._max_body:
            raise self._callback_error(f"response body over {self._max_body} bytes")
        self._chunks.append(data)

    def on_chunk_header(self) -> None:
        self._chunk_count += 1

    def on_message_complete(self) -> None:
        if self._phase == _LENGTH or self._phase == _CHUNKED:
            self._finish()


def request_head(request: httpx.Request) -> bytes:
    """The request line and headers of ``request``, as sent."""
    target = request.url.raw_path or b"/"
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        parts += (name, b": ", value, _CRLF)
    parts.append(_CRLF)
    return b"".join(parts)
