"""Named crash points for fault-injection tests (Jepsen style): die with SIGKILL semantics at a precise step.

``THINKROUTE_CRASH_POINTS="after_llm=3,after_store=5"`` makes the process exit at once (``os._exit(137)``,
no cleanup, no commit) the 3rd time it passes ``after_llm``. Unset in production: a ``hit`` is then one
dictionary lookup.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

POINTS = frozenset({"after_classify", "after_publish", "after_llm", "after_store", "after_escalation_store"})


class CrashPoints:
    def __init__(self, spec: str | None = None) -> None:
        self.targets: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        for part in (spec or "").split(","):
            if not part.strip():
                continue
            name, _, n = part.partition("=")
            name = name.strip()
            if name not in POINTS or not n.strip().isdigit() or int(n) < 1:
                raise ValueError(f"bad crash point {part!r}: expected NAME=N with NAME in {sorted(POINTS)}")
            self.targets[name] = int(n)

    def hit(self, name: str) -> None:
        target = self.targets.get(name)
        if target is None:
            return
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.counts[name] == target:
            log.warning("crash point %s reached (%d): exiting without cleanup", name, target)
            logging.shutdown()
            os._exit(137)
