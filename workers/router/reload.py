"""Policy hot-swap: the router picks up a new version of its policy file without a restart.

Every ``policy_poll_s`` the watcher compares the file's ``(mtime_ns, size, inode)`` with what it last read.
On a change it reads and validates the file (`workers.router.policy.load_policy`, against the classifier's
labels) in a thread; a valid policy whose content differs from the one in use is handed to ``swap`` (the
worker replaces its reference, read once per batch, so a batch is decided by one policy). A file that does
not parse, does not validate or has gone is logged and ignored: the policy in use stays, and the same bad
file is not read again until it changes. Writers should replace the file atomically (``os.replace``, as
``thinkroute fit`` does); a half-written file is only a parse error here, retried at its next change.

Nothing about offsets changes across a swap: the swap only changes which policy object the next batch's
decisions are made with, between batches, on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workers.errors import ConfigError
from workers.router.policy import Policy, load_policy
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.tasks import wait_event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What tells one version of a file from the next without reading it."""

    mtime_ns: int
    size: int
    inode: int


def stamp_of(path: Path) -> Stamp | None:
    """The file's stamp, or None when it cannot be stat'ed (gone, or not readable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyWatcher:
    """Watches one policy file; ``check`` is one poll, ``run`` polls until stopped."""

    def __init__(
        self,
        path: Path,
        labels: list[str] | None,
        policy: Policy,
        metrics: WorkerMetrics | None = None,
        poll_s: float = 2.0,
        seen: Stamp | None = None,
    ) -> None:
        self.path = path
        self.labels = labels
        self.policy = policy  # the one in use
        self.metrics = metrics
        self.poll_s = poll_s
        self._seen = seen  # the version of the file the policy in use was read from
        if metrics is not None:
            metrics.policy_in_use(policy.version)

    @classmethod
    def open(
        cls, path: Path, labels: list[str] | None, metrics: WorkerMetrics | None = None, poll_s: float = 2.0
    ) -> PolicyWatcher:
        """Read the policy (a ConfigError if it is not valid: a router does not start on a bad file) and watch
        its file from there: the stamp is taken before the read, so a change during the read is seen."""
        seen = stamp_of(path)
        return cls(path, labels, load_policy(path, labels), metrics, poll_s, seen)

    def check(self) -> Policy | None:
        """One poll (blocking: it may read the file): the new policy when the file changed to a valid one
        with other content, else None (unchanged, the same content rewritten, or bad: the old one stays)."""
        now = stamp_of(self.path)
        if now == self._seen:
            return None
        self._seen = now
        if now is None:
            log.warning("policy file %s is gone; keeping policy %s", self.path, self.policy.version)
            self._count("failed")
            return None
        try:
            new = load_policy(self.path, self.labels)
        except ConfigError as exc:
            log.warning(
                "policy file %s changed but is not valid; keeping policy %s: %s", self.path, self.policy.version, exc
            )
            self._count("failed")
            return None
        if new == self.policy:
            log.info("policy file %s rewritten with the same content; policy %s stays", self.path, new.version)
            self._count("unchanged")
            return None
        if new.version == self.policy.version:
            log.warning("policy file %s changed but keeps version %s: loaded anyway", self.path, new.version)
        log.info("policy %s replaces %s (from %s)", new.version, self.policy.version, self.path)
        self.policy = new
        self._count("loaded")
        if self.metrics is not None:
            self.metrics.policy_in_use(new.version)
        return new

    async def run(self, stop: asyncio.Event, swap: Callable[[Policy], None]) -> None:
        """Poll every ``poll_s`` until ``stop`` is set; each new policy goes to ``swap``."""
        while not await wait_event(stop, self.poll_s):
            new = await asyncio.to_thread(self.check)
            if new is not None:
                swap(new)

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.policy_reload(result)
