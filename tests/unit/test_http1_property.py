"""Property: the response framing of workers.inference.http.http1 does not depend on how the byte stream is cut.

Several responses back to back on one kept-alive connection (Content-Length and chunked bodies, 1xx interim
heads, optionally a last body that runs to the end of the connection), the stream cut at random points or
at every byte: each parser must see exactly the responses the generator wrote, as parsed from the unsplit
stream, and leave the next response's bytes in the buffer for the next parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.inference.http.http1 import ResponseParser

# status, reason, HTTP version, headers, body, keep-alive
Parsed = tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes, bool]


@dataclass(frozen=True)
class Spec:
    """One response as written: its bytes and what a correct parser reports for it."""

    raw: bytes
    expected: Parsed


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
_VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,;=/:.\"'()", max_size=24)
_REASON = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ", min_size=1, max_size=16)
# bodies full of the bytes framing cares about: CR, LF, "0", hex digits, ";"
_BODY_BYTES = st.binary(max_size=48) | st.lists(st.sampled_from([b"\r", b"\n", b"\r\n\r\n", b"0", b"a", b";"])).map(
    b"".join
)
_RESERVED = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"upgrade", b"proxy-connection"}


@st.composite
def bodies(draw: st.DrawFn, big: bool) -> bytes:
    body = draw(_BODY_BYTES)
    return body * draw(st.sampled_from([1, 1, 1, 2, 400] if big else [1, 2]))  # 400: over 16 KiB (memoryview path)


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Header lines as sent (odd whitespace around values) and as they should be parsed."""
    sent, parsed = b"", []
    for name, value in draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=4)):
        n, v = name.encode(), value.strip(" ").encode()
        if n.lower() in _RESERVED:
            continue
        sent += n + b":" + draw(st.sampled_from([b"", b" ", b"  \t"])) + v + draw(st.sampled_from([b"", b" \t"]))
        sent += b"\r\n"
        parsed.append((n, v))
    return sent, parsed


def chunked(body: bytes, cuts: list[int], ext: bool, upper: bool, trailer: bool) -> bytes:
    out, at = b"", 0
    for end in [*sorted({c % (len(body) + 1) for c in cuts}), len(body)]:
        part = body[at:end]
        if part:
            size = b"%X" % len(part) if upper else b"%x" % len(part)
            out += size + (b";ext=1" if ext else b"") + b"\r\n" + part + b"\r\n"
        at = end
    return out + b"0\r\n" + (b"X-Trailer: t\r\n" if trailer else b"") + b"\r\n"


@st.composite
def responses(draw: st.DrawFn, last: bool, big: bool) -> Spec:
    status = draw(st.sampled_from([200, 201, 204, 304, 400, 404, 429, 500, 503]))
    reason = draw(_REASON).strip().encode() or b"X"
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    sent, parsed = draw(headers())
    close = draw(st.booleans()) if last else False
    if version == b"HTTP/1.0" and not close:
        sent, parsed = sent + b"Connection: keep-alive\r\n", [*parsed, (b"Connection", b"keep-alive")]
    elif close:
        sent, parsed = sent + b"Connection: close\r\n", [*parsed, (b"Connection", b"close")]
    no_body = status in (204, 304)
    body = b"" if no_body else draw(bodies(big))
    framings = ["length", "chunked", "eof"] if last else ["length", "chunked"]
    framing = "length" if no_body else draw(st.sampled_from(framings))
    if framing == "chunked" and version == b"HTTP/1.0":
        framing = "length"
    if framing == "length":  # a 204/304 may announce a length it does not send
        length = draw(st.integers(0, 99)) if no_body else len(body)
        sent, parsed, payload = (
            sent + b"Content-Length: %d\r\n" % length,
            [*parsed, (b"Content-Length", b"%d" % length)],
            body,
        )
    elif framing == "chunked":
        sent, parsed = sent + b"Transfer-Encoding: chunked\r\n", [*parsed, (b"Transfer-Encoding", b"chunked")]
        cuts = draw(st.lists(st.integers(0, 1 << 16), max_size=4))
        payload = chunked(body, cuts, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    else:
        payload = body
    interim = b""
    if draw(st.booleans()) and version == b"HTTP/1.1":
        interim = draw(
            st.sampled_from([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"])
        )
    raw = interim + version + b" %d " % status + reason + b"\r\n" + sent + b"\r\n" + payload
    keep_alive = not close and framing != "eof"
    return Spec(raw, (status, reason, version, parsed, body, keep_alive))


@st.composite
def streams(draw: st.DrawFn, big: bool = True) -> list[Spec]:
    n = draw(st.integers(1, 4))
    return [draw(responses(last=i == n - 1, big=big)) for i in range(n)]


def parse_stream(pieces: list[bytes], count: int) -> tuple[list[Parsed], bytes]:
    """Feed ``pieces`` in turn to one connection's buffer, a fresh parser per response (as the transport does
    per request), then the end of the connection; what was parsed, and what was left in the buffer."""
    buf = bytearray()
    out: list[Parsed] = []
    parser = ResponseParser()

    def take() -> None:
        nonlocal parser
        while len(out) < count and parser.feed(buf):
            out.append(
                (parser.status, parser.reason, parser.http_version, parser.headers, parser.body, parser.keep_alive)
            )
            parser = ResponseParser()

    for piece in pieces:
        buf += piece
        take()
    if len(out) < count and parser.eof():
        out.append((parser.status, parser.reason, parser.http_version, parser.headers, parser.body, parser.keep_alive))
    return out, bytes(buf)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=streams(), cuts=st.lists(st.integers(0, 1 << 20), max_size=24))
def test_any_split_of_a_keep_alive_stream_parses_as_the_whole(specs: list[Spec], cuts: list[int]) -> None:
    data = b"".join(s.raw for s in specs)
    expected = [s.expected for s in specs]
    whole, left = parse_stream([data], len(specs))
    assert whole == expected and left == b""
    pieces = split(data, cuts)
    assert b"".join(pieces) == data
    assert parse_stream(pieces, len(specs)) == (whole, b"")


@settings(max_examples=100, deadline=None)
@given(specs=streams(big=False))
def test_a_stream_fed_one_byte_at_a_time_parses_as_the_whole(specs: list[Spec]) -> None:
    data = b"".join(s.raw for s in specs)
    whole, _ = parse_stream([data], len(specs))
    assert whole == [s.expected for s in specs]
    assert parse_stream([data[i : i + 1] for i in range(len(data))], len(specs)) == (whole, b"")


def test_parse_stream_sees_every_response_of_a_known_stream() -> None:
    """The harness itself: a fixed stream of three responses, whole and byte by byte."""
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\r\n\r\n"
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\n0\r\r\n0\r\nT: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nrest\r\n\r\n"
    )
    got, left = parse_stream([data[i : i + 1] for i in range(len(data))], 3)
    assert (got, left) == parse_stream([data], 3) and left == b""
    assert [(s, b, k) for s, _, _, _, b, k in got] == [
        (200, b"\r\n\r\n", True),
        (503, b"0\r", True),
        (200, b"rest\r\n\r\n", False),
    ]
    assert got[1][3] == [(b"Transfer-Encoding", b"chunked")]
