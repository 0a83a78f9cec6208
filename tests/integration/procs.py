"""Looking at a `thinkroute` process and the embedded stack it started, from outside, through /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

KINDS = ("tansu", "valkey-server", "workers.replay.server", "worker router", "worker inference")


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by whoever inherited it, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
    return found


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def wait_for(cond: object, timeout: float, what: str) -> None:
    """Poll ``cond()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def stack_of(pid: int, timeout: float = 120.0) -> dict[int, str]:
    """The five children of a `thinkroute run` / `stack up` once they all run (broker, Redis, replay, router,
    inference)."""
    found: dict[int, str] = {}

    def complete() -> bool:
        nonlocal found
        if not alive(pid):
            raise AssertionError(f"pid {pid} exited before its stack was up")
        found = children(pid)
        return all(any(kind in cmd for cmd in found.values()) for kind in KINDS)

    wait_for(complete, timeout, f"the embedded stack of pid {pid}")
    return found


def workdir_of(stack: dict[int, str]) -> Path:
    [cwd] = {os.readlink(f"/proc/{p}/cwd") for p in stack}
    return Path(cwd)


def redis_url_of(stack: dict[int, str]) -> str:
    """The Redis URL the workers were given (in their environment, which only their user can read)."""
    [worker] = [p for p, cmd in stack.items() if "worker router" in cmd]
    return environ(worker)["THINKROUTE_REDIS_URL"]


def redis_password(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password
