"""Files in a local directory (``thinkroute serve``'s default): the directory 0700, each file 0600, written to
a temporary name in the same directory and renamed once complete, so a failed or cancelled put leaves nothing.

The blocking file calls run in threads (``asyncio.to_thread``), one chunk at a time. Each open file is guarded
by a lock: a put or get that is cancelled while its thread still writes or reads closes the file (and removes
what it wrote) only after that one call returned, so a file descriptor is never closed under a running call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from workers.files.ids import check_key

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


class _Guarded:
    """One open file whose calls (from worker threads) and whose closing (from the event loop) never overlap."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.lock = threading.Lock()
        self.closed = False

    def read(self, n: int) -> bytes:
        with self.lock:
            if self.closed:
                raise ValueError("read from a closed file")
            return self.file.read(n)

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                raise ValueError("write to a closed file")
            self.file.write(data)

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.file.close()


class _Upload(_Guarded):
    """A file being written under a temporary name; ``commit`` makes it ``final``, ``discard`` removes what
    was written (the temporary file, or the final one if the commit ran)."""

    def __init__(self, tmp: Path, final: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        super().__init__(os.fdopen(fd, "wb"))
        self.tmp = tmp
        self.final = final
        self.committed = False

    def commit(self) -> None:
        with self.lock:
            if self.closed:
                raise ValueError("commit of a discarded upload")
            self.file.flush()
            os.fsync(self.file.fileno())
            self.closed = True
            self.file.close()
            os.replace(self.tmp, self.final)
            self.committed = True
        _fsync_dir(self.final.parent)

    def discard(self) -> None:
        self.close()
        with self.lock:
            (self.final if self.committed else self.tmp).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """A ``workers.files.storage.FileStorage`` in the directory ``root`` (made 0700 if need be)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(root, DIR_MODE)  # an existing directory keeps its mode through mkdir

    def path(self, key: str) -> Path:
        """Where the object ``key`` lives; ValueError for a key that is not one of ours."""
        return self.root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self.path(key)
        upload = _Upload(self.root / f".tmp-{key}-{secrets.token_hex(8)}", final)
        size = 0
        try:
            async for chunk in chunks:
                if chunk:
                    await asyncio.to_thread(upload.write, chunk)
                    size += len(chunk)
            await asyncio.to_thread(upload.commit)
        except BaseException:
            # waits (at most one chunk's write, or the commit) for the thread of a cancelled call
            upload.discard()
            raise
        log.debug("stored %s (%d bytes)", key, size)
        return size

    async def get(self, key: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        path = self.path(key)
        file = _Guarded(await asyncio.to_thread(open, path, "rb"))
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def close(self) -> None:
        return None
