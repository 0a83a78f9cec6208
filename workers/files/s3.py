"""Files in an S3-compatible object store (``THINKROUTE_API__FILES_URL=s3://bucket/prefix``), through
``obstore``: several ``serve`` replicas share them.

Memory is bounded by the part size, never the object: an object of up to one part is sent in one PUT; a
larger one as a multipart upload of ``part_size`` parts (S3's minimum is 5 MiB), uploaded ``max_concurrency``
at a time (obstore holds about ``part_size * max_concurrency`` bytes). Either way the object appears whole or
not at all: a multipart upload that fails is aborted, one that is cancelled is never completed (S3 keeps its
parts hidden until a bucket lifecycle rule removes them). A get streams the object as it arrives.

Errors: a missing object is FileNotFoundError; credentials S3 refuses are a ConfigError; any other failure of
the store (unreachable, timed out, 5xx) is a TransientError. An error raised by the chunks a put is given
reaches its caller unchanged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from workers.errors import ConfigError, TransientError
from workers.files.ids import check_key

log = logging.getLogger(__name__)

MIN_PART = 5 * 1024 * 1024  # S3's smallest part (but the last)


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix without slashes at its ends); ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"files_url must look like s3://bucket[/prefix], not {url!r}")
    return parts.netloc, parts.path.strip("/")


def _mapped(err: BaseError, what: str) -> Exception:
    detail = str(err).split("\n", 1)[0]  # obstore's first line; a debug dump of the request follows
    if isinstance(err, PermissionDeniedError | UnauthenticatedError):
        return ConfigError(f"the S3 file store refused the credentials ({what}): {detail}")
    return TransientError(f"the S3 file store failed ({what}): {detail}")


class S3Storage:
    """A ``workers.files.storage.FileStorage`` in an S3 bucket, under a prefix.

    ``endpoint``: an S3-compatible server (``http://`` ones are allowed); None: AWS. Keys left None are taken
    from the environment as obstore does (``AWS_ACCESS_KEY_ID``, ..., instance metadata). ``timeout_s``: the
    longest one request may last, a whole download included (a slow reader of a large output file)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = MIN_PART,
        max_concurrency: int = 1,
        timeout_s: float = 3600.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if part_size < MIN_PART or max_concurrency < 1:
            raise ConfigError(f"part_size must be at least {MIN_PART} and max_concurrency at least 1")
        self.bucket, self.prefix = parse_url(url)
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        kwargs: dict[str, str] = {"region": region}
        if endpoint:
            kwargs["endpoint"] = endpoint
        if access_key_id is not None:
            kwargs["access_key_id"] = access_key_id
        if secret_access_key is not None:
            kwargs["secret_access_key"] = secret_access_key
        self.store = S3Store(
            self.bucket,
            prefix=self.prefix or None,
            client_options={
                "allow_http": bool(endpoint and endpoint.startswith("http://")),
                "timeout": timedelta(seconds=timeout_s),
                "connect_timeout": timedelta(seconds=connect_timeout_s),
            },
            **kwargs,  # type: ignore[arg-type]  # S3Config's keys, as plain strings
        )

    def __repr__(self) -> str:
        return f"S3Storage(s3://{self.bucket}/{self.prefix})"

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        check_key(key)
        source = _Source(chunks)
        try:
            # the first part, to tell a small object (one PUT) from a large one (multipart)
            head: deque[bytes] = deque()
            held = 0
            async for chunk in source:
                head.append(chunk)
                held += len(chunk)
                if held >= self.part_size:
                    break
            if held < self.part_size:
                await obstore.put_async(self.store, key, _drain(head), use_multipart=False)
            else:
                await obstore.put_async(
                    self.store,
                    key,
                    _joined(head, source),
                    use_multipart=True,
                    chunk_size=self.part_size,
                    max_concurrency=self.max_concurrency,
                )
        except BaseError as err:
            if source.error is not None:
                raise source.error from err
            raise _mapped(err, f"put {key}") from err
        log.debug("stored %s (%d bytes) in %r", key, source.size, self)
        return source.size

    async def get(self, key: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        check_key(key)
        try:
            result = await obstore.get_async(self.store, key)
            async for buf in result.stream(min_chunk_size=chunk_size):
                if len(buf) <= chunk_size:
                    yield buf
                    continue
                view = memoryview(buf)
                for i in range(0, len(buf), chunk_size):
                    yield bytes(view[i : i + chunk_size])
        except FileNotFoundError as err:
            raise FileNotFoundError(f"no stored file {key}") from err  # obstore's message has a request dump
        except BaseError as err:
            raise _mapped(err, f"get {key}") from err

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await obstore.delete_async(self.store, key)
        except FileNotFoundError:
            pass
        except BaseError as err:
            raise _mapped(err, f"delete {key}") from err

    async def close(self) -> None:
        return None  # obstore's client has nothing to close


class _Source:
    """The chunks of a put, counted; what they raised is kept (obstore may wrap it in its own error)."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self.chunks = aiter(chunks)
        self.size = 0
        self.error: BaseException | None = None

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                raise
            except BaseException as err:
                self.error = err
                raise
            if chunk:
                self.size += len(chunk)
                return chunk


def _drain(chunks: deque[bytes]) -> Iterator[bytes]:
    while chunks:
        yield chunks.popleft()


async def _joined(head: deque[bytes], rest: _Source) -> AsyncIterator[bytes]:
    """``head``'s chunks (let go as they are handed on), then the rest."""
    while head:
        yield head.popleft()
    async for chunk in rest:
        yield chunk
