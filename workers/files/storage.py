"""Where uploaded, output and error files' bytes live: a local directory (default, ``workers.files.local``) or an
S3-compatible object store (several ``serve`` replicas share it, ``workers.files.s3``). Streamed both ways,
never whole in memory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol

from workers.errors import ConfigError
from workers.files.local import LocalStorage
from workers.files.s3 import S3Storage
from workers.settings import ApiSettings

log = logging.getLogger(__name__)


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
    if api.files_url:
        if not api.files_url.startswith("s3://"):
            raise ConfigError(f"files_url must be s3://bucket[/prefix], not {api.files_url!r}")
        secret = api.s3_secret_access_key.get_secret_value() if api.s3_secret_access_key else None
        storage = S3Storage(
            api.files_url,
            endpoint=api.s3_endpoint,
            region=api.s3_region,
            access_key_id=api.s3_access_key_id,
            secret_access_key=secret,
        )
        log.info("file storage: %r at %s", storage, api.s3_endpoint or "AWS")
        return storage
    root = api.files_dir or cache_dir / "files"
    log.info("file storage: %s", root)
    return LocalStorage(root)
