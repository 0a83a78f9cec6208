"""Where uploaded, output and error files' bytes live: a local directory (default) or an S3-compatible object
store (several ``serve`` replicas share it). Streamed both ways, never whole in memory. STUB."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol

from workers.settings import ApiSettings


class FileStorage(Protocol):
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Write the object from ``chunks`` (replacing none: keys are new ids); returns its size in bytes. A
        failure leaves no object."""
        ...

    def get(self, key: str, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; FileNotFoundError (when iterated) if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; no error if it is gone."""
        ...

    async def close(self) -> None: ...


def open_storage(api: ApiSettings, cache_dir: Path) -> FileStorage:
    """The storage the settings name: S3 when ``files_url`` is s3://..., else ``files_dir`` (default
    ``cache_dir/files``, made 0700)."""
    raise NotImplementedError
