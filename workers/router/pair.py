"""The router's (policy, classifier) pair and the pair waiting to replace it (a hot swap, `workers.router.reload`).

A new policy for the classifier in use replaces the policy at once (a batch reads it once, after its
classification, so a batch is decided by one policy). A new classifier comes with its policy and waits as
``pending`` until the worker sees no batch being classified or decided (``switch``): then both are replaced and
the old classifier is handed back to be closed, so no thread still uses a classifier when it is closed, and every
batch is classified and decided by one pair.
"""

from __future__ import annotations

import logging

from workers.classifier.model import Classifier
from workers.router.policy import Policy

log = logging.getLogger(__name__)


class Pair:
    def __init__(self, policy: Policy, classifier: Classifier) -> None:
        self.policy = policy
        self.classifier = classifier
        self.pending: tuple[Policy, Classifier] | None = None

    def offer(self, policy: Policy, classifier: Classifier | None = None) -> None:
        """A new policy (for the classifier in use, or for the one waiting when there is one), or a new pair."""
        if classifier is None:
            if self.pending is None:
                self.policy = policy
            else:
                self.pending = policy, self.pending[1]
            return
        if self.pending is not None and self.pending[1] is not classifier:
            self.pending[1].close()  # superseded before any batch used it
        self.pending = policy, classifier

    def switch(self) -> Classifier | None:
        """Swap in the waiting pair (call only while no batch is classified or decided): the old classifier, for
        the caller to close, or None when nothing waited."""
        if self.pending is None:
            return None
        (self.policy, new), self.pending = self.pending, None
        old, self.classifier = self.classifier, new
        log.info("classifier %s replaces %s (policy %s)", new.version, old.version, self.policy.version)
        return old

    def discard(self) -> None:
        """Close a waiting classifier that never got used (the router stops)."""
        if self.pending is not None:
            self.pending[1].close()
            self.pending = None
