"""Helpers shared by the tests (the fixtures are in conftest.py): paths, waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    return Path(os.environ.get("THINKROUTE_CACHE_DIR") or Path.home() / ".cache" / "thinkroute")


async def wait_until(cond: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``cond`` until it holds; fail with ``what`` after ``timeout`` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition on in-process fakes (every 2 ms) until it holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - polling fakes, no event to wait on
            await asyncio.sleep(0.002)
