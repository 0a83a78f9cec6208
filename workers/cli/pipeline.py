"""The pipeline a job command runs against (``run``, ``compare``): the embedded stack when no broker is set
(started once, stopped on every exit), else the configured broker and Redis; with ``run``'s stop signals.

Every exit stops every child it started within a bounded time and removes the stack's directory: the work
done, workers stopped with SIGTERM (they drain and commit), then the servers; an error or an interrupt,
every child SIGKILLed (the logs stay when a service died: the error names its log); a second signal kills
the workers at once, a third exits at once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from workers.cli import console
from workers.cli.common import err
from workers.cli.interrupt import StopSignals, in_daemon_thread
from workers.errors import EXIT_INTERRUPTED, ConfigError, ServiceError
from workers.settings import Settings

if TYPE_CHECKING:
    from workers.local.stack import EmbeddedStack


def say(message: str) -> None:
    """A line on stderr that cannot fail the stop (after SIGHUP the terminal may be gone)."""
    try:
        err.print(message, highlight=False, markup=False)
    except (OSError, ValueError):
        pass


def ensure_classifier(cache_dir: Path, progress: bool) -> Path:
    """The classifier artefact (built on first use); a cache directory it cannot write is a ConfigError."""
    from workers.classifier.cache import ensure_artifact

    try:
        return ensure_artifact(cache_dir, progress)
    except OSError as exc:
        where = exc.filename or cache_dir
        raise ConfigError(
            f"cannot write the classifier cache at {where}: {exc.strerror or exc} "
            "(set THINKROUTE_CACHE_DIR to a writable directory)"
        ) from exc


class Pipeline:
    """Use: ``install()`` in the command's task, ``s = await start(s)``, the work, then ``finish()``; on an
    exception ``abort(exc)``; ``uninstall()`` in a ``finally``."""

    def __init__(self, inference_workers: int, time_scale: float, quiet: bool) -> None:
        self.inference_workers = inference_workers
        self.time_scale = time_scale
        self.quiet = quiet
        self.stack: EmbeddedStack | None = None
        self.signals = StopSignals()
        self.signals.on_force = self._force
        self.signals.on_exit = self._exit_now

    def install(self) -> None:
        self.signals.install()

    def uninstall(self) -> None:
        self.signals.uninstall()

    async def start(self, s: Settings) -> Settings:
        """The settings to reach the pipeline: ``s`` itself with a broker set, else the embedded stack's."""
        if not s.embedded:
            return s
        from workers.local.stack import EmbeddedStack

        await in_daemon_thread(lambda: ensure_classifier(s.cache_dir, not self.quiet))
        self.stack = EmbeddedStack(s, inference_workers=self.inference_workers, replay_time_scale=self.time_scale)
        with console.status(f"starting the embedded stack (logs in {self.stack.workdir})", quiet=self.quiet):
            env = await self.stack.start()
        return s.model_copy(
            update={
                "kafka_bootstrap": env["THINKROUTE_KAFKA_BOOTSTRAP"],
                "redis_url": SecretStr(env["THINKROUTE_REDIS_URL"]),
            }
        )

    def check(self) -> None:
        """Raise when an embedded service died (a job waiting on it would never end)."""
        if self.stack is not None:
            self.stack.check()

    async def ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every embedded worker's consumer joined its group (its ``/ready``; a router loads its
        classifier first), so a first job's latency is not the workers' start. Nothing to wait for against
        a configured broker (its workers are the operator's)."""
        if self.stack is None:
            return
        import httpx

        urls = [u.removesuffix("/metrics") + "/ready" for u in self.stack.metrics_urls.values()]
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while urls:
                self.check()
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"embedded workers not ready within {timeout_s:g}s (logs in {self.stack.workdir})"
                    )
                try:
                    if (await client.get(urls[0])).status_code == 200:
                        urls.pop(0)
                        continue
                except httpx.TransportError:
                    pass  # not listening yet
                await asyncio.sleep(0.1)

    def finish(self, kill: bool = False) -> None:
        """The work is done: stop the embedded stack (``kill``: nothing left of it is worth a wait)."""
        if self.stack is not None:
            if kill:
                self.stack.kill()
            self.stack.stop()

    def abort(self, exc: BaseException) -> bool:
        """The work failed or was interrupted: nothing of the embedded stack is worth draining (its broker and
        Redis hold the jobs in memory only), and a worker waiting on a slow LLM would hold a graceful stop up.
        The logs stay when they explain the failure (a service died: the error names its log). Returns
        whether a stop signal caused ``exc``."""
        stopped = self.signals.stopped(exc)
        if self.stack is not None:
            for svc in self.stack.children:
                svc.stop(timeout=10, sig=signal.SIGKILL)
            self.stack.stop(keep_logs=isinstance(exc, ServiceError))
        return stopped

    def _exit_now(self) -> None:
        if self.stack is not None:
            self.stack.kill()
            shutil.rmtree(self.stack.workdir, ignore_errors=True)

    def _force(self) -> None:
        if self.stack is not None:
            self.stack.kill_workers()
        else:  # nothing of ours to stop: the user wants out
            os._exit(EXIT_INTERRUPTED)
