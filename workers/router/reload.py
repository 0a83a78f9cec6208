"""Policy hot-swap: the router picks up a new version of its policy file without a restart.

Every ``policy_poll_s`` the watcher compares the file's ``(mtime_ns, size, inode)`` with what it last read.
On a change it reads and validates the file (`workers.router.policy.load_policy`) in a thread; a valid policy
whose content differs from the one in use is handed to ``swap`` (the worker replaces its reference, read once
per batch, so a batch is decided by one policy). A file that does not parse, does not validate or has gone is
logged and ignored: the policy in use stays, and the same bad file is not read again until it changes. Writers
should replace the file atomically (``os.replace``, as ``thinkroute fit`` does); a half-written file is only a
parse error here, retried at its next change.

A policy whose ``classifier`` names another artefact dir (resolved; no key: the router's default one) than the
one in use comes with that classifier: the watcher loads it in the same thread and validates the policy against
its labels, and hands over both (the worker swaps the pair once no batch is being classified, and closes the old
classifier). One that fails to load or does not fit the policy is logged, closed and ignored like a bad file.
The same artefact dir: only the policy is swapped (an artefact rebuilt in place is not reloaded).

Nothing about offsets changes across a swap: the swap only changes which policy (and classifier) the next
batch's decisions are made with, between batches, on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workers.classifier.model import Classifier
from workers.errors import ConfigError
from workers.router.loading import Loader, artifact_for, open_pair
from workers.router.policy import Policy, check_policy, load_policy
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.tasks import wait_event

log = logging.getLogger(__name__)

INVALID = "policy file %s changed but is not valid; keeping policy %s: %s"


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


@dataclass(frozen=True, slots=True)
class Swap:
    """A new policy, and the classifier to decide it with when that is not the one in use (None: the same)."""

    policy: Policy
    classifier: Classifier | None = None


class PolicyWatcher:
    """Watches one policy file; ``check`` is one poll, ``run`` polls until stopped."""

    def __init__(
        self,
        path: Path,
        policy: Policy,
        classifier: Classifier,
        artifact: Path,
        load: Loader,
        default: Callable[[], Path],
        metrics: WorkerMetrics | None = None,
        poll_s: float = 2.0,
        seen: Stamp | None = None,
    ) -> None:
        self.path = path
        self.policy = policy  # the one in use
        self.artifact = artifact  # the artefact dir of the classifier in use (resolved)
        self.labels = list(classifier.labels)
        self.classifier_version = classifier.version
        self.load = load
        self.default = default  # the artefact of a policy without a ``classifier`` key
        self.metrics = metrics
        self.poll_s = poll_s
        self._seen = seen  # the version of the file the policy in use was read from
        if metrics is not None:
            metrics.policy_in_use(policy.version, classifier.version)

    @classmethod
    def open(
        cls,
        path: Path,
        default: Callable[[], Path],
        load: Loader,
        metrics: WorkerMetrics | None = None,
        poll_s: float = 2.0,
    ) -> tuple[PolicyWatcher, Classifier]:
        """Read the policy and open its classifier (a ConfigError if the policy is not valid for it: a router
        does not start on a bad file) and watch the file from there: the stamp is taken before the read, so a
        change during the read is seen. The classifier is the caller's to close."""
        seen = stamp_of(path)
        policy = load_policy(path)
        classifier = open_pair(policy, default, load, str(path))
        artifact = artifact_for(policy, default).resolve()
        return cls(path, policy, classifier, artifact, load, default, metrics, poll_s, seen), classifier

    def check(self) -> Swap | None:
        """One poll (blocking: it may read the file and load a classifier): the swap when the file changed to a
        valid policy with other content, else None (unchanged, the same content rewritten, or bad: the old
        pair stays)."""
        now = stamp_of(self.path)
        if now == self._seen:
            return None
        self._seen = now
        if now is None:
            self._failed("policy file %s is gone; keeping policy %s", self.path, self.policy.version)
            return None
        try:
            new = load_policy(self.path)
        except ConfigError as exc:
            self._failed(INVALID, self.path, self.policy.version, exc)
            return None
        if new == self.policy:
            log.info("policy file %s rewritten with the same content; policy %s stays", self.path, new.version)
            self._count("unchanged")
            return None
        if new.version == self.policy.version:
            log.warning("policy file %s changed but keeps version %s: loaded anyway", self.path, new.version)
        try:
            artifact = artifact_for(new, self.default).resolve()
        except Exception as exc:  # the default artefact could not be built or found
            self._failed(
                "policy %s: no classifier artefact; keeping policy %s: %s", new.version, self.policy.version, exc
            )
            return None
        classifier = None
        if artifact == self.artifact:
            try:
                check_policy(new, self.labels, str(self.path))
            except ConfigError as exc:
                self._failed(INVALID, self.path, self.policy.version, exc)
                return None
        else:
            classifier = self._open(new, artifact)
            if classifier is None:
                return None
            log.info("policy %s brings classifier %s (from %s)", new.version, classifier.version, artifact)
            self.artifact, self.labels, self.classifier_version = artifact, list(classifier.labels), classifier.version
        log.info("policy %s replaces %s (from %s)", new.version, self.policy.version, self.path)
        self.policy = new
        self._count("loaded")
        if self.metrics is not None:
            self.metrics.policy_in_use(new.version, self.classifier_version)
        return Swap(new, classifier)

    def _open(self, policy: Policy, artifact: Path) -> Classifier | None:
        """The classifier of a new policy, checked against it; None (logged, counted, nothing left open) if it
        does not load or does not fit."""
        try:
            classifier = self.load(artifact)
        except Exception as exc:  # a missing file, a bad model, card or tokenizer: any load error keeps the old pair
            self._failed(
                "policy %s names classifier %s, which does not load; keeping policy %s: %s",
                policy.version,
                artifact,
                self.policy.version,
                exc,
            )
            return None
        try:
            check_policy(policy, classifier.labels, str(self.path))
        except ConfigError as exc:
            classifier.close()
            self._failed(
                "policy %s does not fit classifier %s; keeping policy %s: %s",
                policy.version,
                artifact,
                self.policy.version,
                exc,
            )
            return None
        return classifier

    async def run(self, stop: asyncio.Event, swap: Callable[[Policy, Classifier | None], None]) -> None:
        """Poll every ``poll_s`` until ``stop`` is set; each new policy (and classifier) goes to ``swap``."""
        while not await wait_event(stop, self.poll_s):
            new = await asyncio.to_thread(self.check)
            if new is not None:
                swap(new.policy, new.classifier)

    def _failed(self, msg: str, *args: object) -> None:
        """Log why a change is ignored (paths, versions, the error: never prompt text) and count it as failed."""
        log.warning(msg, *args)
        self._count("failed")

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.policy_reload(result)
