"""Peak RSS of named processes while a benchmark runs: VmHWM, reset first, sampled from a thread (Linux)."""

from __future__ import annotations

import threading
from pathlib import Path


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM) to its current RSS."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


class PeakWatch:
    """Samples the peak RSS (VmHWM, MB) of named processes every ``every`` seconds in a thread, keeping the
    highest seen (a process's last sample before it exits is its peak, to within one interval)."""

    def __init__(self, pids: dict[str, int], every: float = 0.25) -> None:
        self.pids = dict(pids)
        self.every = every
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def __enter__(self) -> PeakWatch:
        for pid in self.pids.values():
            reset_peak(pid)
        self._thread.start()
        return self

    def _sample(self) -> None:
        for name, pid in list(self.pids.items()):
            kb = status_kb(pid, "VmHWM")
            if kb:
                self.peak[name] = max(self.peak.get(name, 0.0), round(kb / 1024, 1))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
