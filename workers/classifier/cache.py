"""Where the classifier artefact lives in the cache, and building it once (under a file lock)."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from workers.classifier.build import build_artifact, fingerprint

log = logging.getLogger(__name__)

CARD = "card.json"


def artifact_dir(cache_dir: Path) -> Path:
    """``cache_dir/classifier/<fingerprint>``: a changed recipe, data set or encoder gets a new dir."""
    return Path(cache_dir).expanduser() / "classifier" / fingerprint()


def is_complete(path: Path) -> bool:
    """An artefact dir is complete once its card is there (the build writes it last, then renames)."""
    return (path / CARD).is_file() and (path / "model.onnx").is_file()


def ensure_artifact(cache_dir: Path, progress: bool = True) -> Path:
    """The artefact dir, built first if missing; concurrent callers wait for one build."""
    target = artifact_dir(cache_dir)
    if is_complete(target):
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if is_complete(target):  # built by another process while we waited
                return target
            log.info("building the classifier artefact (first use, about 2 minutes on 2 cores) into %s", target)
            build_artifact(target, progress=progress)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return target
