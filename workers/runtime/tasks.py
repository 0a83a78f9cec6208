"""Structured concurrency for the workers' stages (Python 3.11's ``asyncio.TaskGroup``).

``task_group()`` is a TaskGroup whose failure is the failing task's own exception rather than an
ExceptionGroup around it: a worker's caller (``serve_*``, the CLI, the tests) catches and reports errors by
their type, as it did before its stages ran in a group. When several tasks failed at once, the first is
raised and the others are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    try:
        async with asyncio.TaskGroup() as tg:
            yield tg
    except BaseExceptionGroup as group:
        first, *others = _leaves(group)
        for exc in others:
            log.error("another task failed too: %r", exc, exc_info=exc)
        raise first from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group``, each once (a task that awaited a failed one raises the same exception)."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        for leaf in _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]:
            if all(leaf is not seen for seen in out):
                out.append(leaf)
    return out


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` passed (None: no limit); whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
    return event.is_set()
