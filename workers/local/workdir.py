"""The embedded stack's working directory: private (0700), owned by one command, cleaned up after it.

``thinkroute run`` removes its directory in every exit it can handle (end, error, SIGTERM, SIGHUP, Ctrl-C).
When it is SIGKILLed nothing of it runs: its children die with it (PR_SET_PDEATHSIG) but the directory stays.
So each directory records its owner (pid and start time) and the next start removes the directories of
owners that are gone. A directory kept for its logs (a service died: the error names the log) has no owner
record and is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from workers.local.redis_conf import write_private

log = logging.getLogger(__name__)

PREFIX = "thinkroute-stack-"
OWNER = "owner"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if there is no
    such process; with the pid, it names a process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def _alive(pid: int, started: str | None) -> bool:
    if started is not None:
        return _start_time(pid) == started
    try:  # no /proc when it was recorded: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_workdir() -> Path:
    """A new private directory (``mkdtemp``: 0700) that records this process as its owner."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    pid = os.getpid()
    write_private(path / OWNER, f"{pid} {_start_time(pid) or '-'}\n")
    return path


def disown(path: Path) -> None:
    """Keep ``path`` past this process (its logs explain a failure): no later start removes it."""
    (path / OWNER).unlink(missing_ok=True)


def owner_gone(path: Path) -> bool:
    """True if ``path`` records an owner and that process no longer runs."""
    try:
        pid_text, started = (path / OWNER).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return not _alive(pid, None if started == "-" else started)


def clean_stale(root: Path | None = None) -> list[Path]:
    """Remove this user's stack directories under ``root`` (default: the temp dir) whose owner is gone."""
    root = root or Path(tempfile.gettempdir())
    removed = []
    for path in root.glob(f"{PREFIX}*"):
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d stack directories left by commands that were killed: %s", len(removed), removed)
    return removed
