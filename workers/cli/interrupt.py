"""Stop signals for a command that runs a job: SIGINT (Ctrl-C), SIGTERM and SIGHUP, counted together.

The first asks for a graceful stop: the command's task is cancelled where it waits, and the command stops
its workers within a bounded grace, writes what it has and says how to continue. The second forces it (the
command's ``on_force``: kill the workers now). The third runs ``on_exit`` (kill every child, remove the
working directory) and exits at once, 130.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

from workers.errors import EXIT_INTERRUPTED, ThinkRouteError

log = logging.getLogger(__name__)
T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RECANCEL_S = 0.25


class Interrupted(ThinkRouteError):
    """A stop signal ended the command (exit 130)."""

    exit_code = EXIT_INTERRUPTED


class StopSignals:
    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None
        self.stopping = asyncio.Event()
        self.acknowledged = False
        self.on_force: Callable[[], None] = lambda: None
        self.on_exit: Callable[[], None] = lambda: None
        self._task: asyncio.Task[object] | None = None
        self._installed: list[int] = []

    def install(self) -> None:
        """Handle the signals in the running loop, for the current task."""
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no such signal
                continue
            self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _on_signal(self, sig: int) -> None:
        self.count += 1
        name = signal.Signals(sig).name
        if self.count == 1:
            self.first = name
            log.info("%s: stopping", name)
            self.stopping.set()
            self._cancel()
        elif self.count == 2:
            log.info("%s again: forcing the stop", name)
            self.on_force()
        else:
            try:
                self.on_exit()
            finally:
                os._exit(EXIT_INTERRUPTED)

    def _cancel(self) -> None:
        """Cancel the task, and again every ``RECANCEL_S`` until it says it saw it (`stopped`): a library may
        swallow a cancellation that lands in the middle of its call (redis-py 8.1 does, measured: 10 to 21 of
        200 cancellations of a task polling Redis were lost), and a lost one would leave the command waiting."""
        task = self._task
        if task is None or task.done() or self.acknowledged:
            return
        task.cancel()
        asyncio.get_running_loop().call_later(RECANCEL_S, self._cancel)

    def stopped(self, exc: BaseException) -> bool:
        """True if ``exc`` is the cancellation a stop signal caused; then the task is uncancelled (each of its
        cancellations), so what the command does next (stop, write its results) is not cancelled again."""
        if isinstance(exc, asyncio.CancelledError) and self.stopping.is_set():
            self.acknowledged = True
            task = asyncio.current_task()
            while task is not None and task.cancelling():
                task.uncancel()
            return True
        return False


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a daemon thread: awaiting it can be cancelled, and a process that exits meanwhile does not
    wait for the thread (``asyncio.to_thread`` would: the loop joins its executor at the end)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, exc: BaseException | None) -> None:
        if done.done():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def target() -> None:
        value, error = None, None
        try:
            value = fn()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=target, name="thinkroute-worker-thread", daemon=True).start()
    return await done
