"""The router's policy hot-swap: the watcher of the policy file (workers.router.reload)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import cast

import yaml

from tests.unit.test_policy import LABELS
from workers.classifier.model import Classifier
from workers.router.policy import Policy, load_policy
from workers.router.reload import PolicyWatcher, Swap
from workers.runtime.metrics import WorkerMetrics


def write(path: Path, text: str) -> None:
    """As ``thinkroute fit`` does: a temporary file, then os.replace."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def policy_text(version: str, threshold: float = 0.7) -> str:
    doc = {"version": version, "default": {"use_reasoning": "score"}, "reasoning": {"threshold": threshold}}
    return yaml.safe_dump(doc)


def reloads(m: WorkerMetrics, result: str) -> float:
    return m.registry.get_sample_value("thinkroute_policy_reloads_total", {"result": result}) or 0.0


def in_use(m: WorkerMetrics) -> str | None:
    for metric in m.registry.collect():
        if metric.name == "thinkroute_policy":
            for sample in metric.samples:
                return sample.labels["version"]
    return None


class FakeClassifier:
    """What the watcher reads of a classifier: labels, version, close."""

    def __init__(self, artifact: Path) -> None:
        self.artifact = artifact
        self.labels = json.loads((artifact / "labels.json").read_text("utf-8"))  # a missing dir: OSError
        self.version = json.loads((artifact / "card.json").read_text("utf-8"))["version"]
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def make_artifact(where: Path, labels: list[str], version: str) -> Path:
    where.mkdir(parents=True)
    (where / "labels.json").write_text(json.dumps(labels), "utf-8")
    (where / "card.json").write_text(json.dumps({"version": version}), "utf-8")
    return where


class Loads:
    """A loader of fake classifiers that keeps every one it opened."""

    def __init__(self) -> None:
        self.opened: list[FakeClassifier] = []

    def __call__(self, artifact: Path) -> Classifier:
        c = FakeClassifier(artifact)
        self.opened.append(c)
        return cast(Classifier, c)


def watcher(tmp_path: Path) -> tuple[Path, PolicyWatcher, WorkerMetrics]:
    path, w, m, _ = watched(tmp_path)
    return path, w, m


def watched(tmp_path: Path) -> tuple[Path, PolicyWatcher, WorkerMetrics, Loads]:
    """A watcher on policy v1 with the default artefact (LABELS, version "shipped")."""
    default = make_artifact(tmp_path / "shipped", LABELS, "shipped")
    path = tmp_path / "policy.yaml"
    write(path, policy_text("v1"))
    m, loads = WorkerMetrics("router", "g"), Loads()
    w, first = PolicyWatcher.open(path, lambda: default, loads, m, poll_s=0.01)
    assert cast(FakeClassifier, first).artifact == default and first.version == "shipped"
    return path, w, m, loads


def test_a_new_version_is_loaded_once_and_reported(tmp_path: Path) -> None:
    path, w, m = watcher(tmp_path)
    assert (w.policy.version, in_use(m)) == ("v1", "v1")
    assert w.check() is None  # nothing changed
    write(path, policy_text("v2", threshold=0.2))
    swap = w.check()
    assert isinstance(swap, Swap) and swap.classifier is None  # the same classifier: the policy only
    new = swap.policy
    assert isinstance(new, Policy) and new.version == "v2"
    assert new.reasoning is not None and new.reasoning.threshold == 0.2
    assert new == load_policy(path, LABELS)
    assert w.check() is None  # seen
    assert (w.policy.version, in_use(m), reloads(m, "loaded"), reloads(m, "failed")) == ("v2", "v2", 1, 0)


def test_a_bad_file_keeps_the_old_policy_until_a_good_one_comes(tmp_path: Path) -> None:
    path, w, m = watcher(tmp_path)
    for bad in (
        "version: [unclosed",
        "version: v2\nno_such_field: 1\n",
        policy_text("v2") + "categories: {astrology: {use_reasoning: true}}\n",
    ):
        write(path, bad)
        assert w.check() is None
        assert w.check() is None  # the same bad file is not read (nor counted) again
        assert (w.policy.version, in_use(m)) == ("v1", "v1")
    assert (reloads(m, "failed"), reloads(m, "loaded")) == (3, 0)
    path.unlink()
    assert w.check() is None and w.policy.version == "v1"
    assert reloads(m, "failed") == 4
    write(path, policy_text("v3"))
    new = w.check()
    assert new is not None and new.policy.version == "v3" and in_use(m) == "v3"


def test_the_same_content_rewritten_keeps_the_version(tmp_path: Path) -> None:
    path, w, m = watcher(tmp_path)
    before = w.policy
    write(path, policy_text("v1"))  # a new inode and mtime, the same policy
    assert w.check() is None
    assert w.policy is before and in_use(m) == "v1"
    assert (reloads(m, "unchanged"), reloads(m, "loaded")) == (1, 0)


def test_a_half_written_file_is_a_parse_error_then_read_when_complete(tmp_path: Path) -> None:
    path, w, m = watcher(tmp_path)
    full = policy_text("v2")
    path.write_text(full[: len(full) // 3], "utf-8")  # a writer that does not use os.replace, caught midway
    assert w.check() is None and w.policy.version == "v1"
    assert reloads(m, "failed") == 1
    path.write_text(full, "utf-8")
    new = w.check()
    assert new is not None and new.policy.version == "v2"


async def test_run_hands_each_new_policy_to_swap_and_stops(tmp_path: Path) -> None:
    path, w, _ = watcher(tmp_path)
    stop = asyncio.Event()
    got: list[str] = []
    swapped = asyncio.Event()

    def swap(p: Policy, c: Classifier | None) -> None:
        assert c is None
        got.append(p.version)
        swapped.set()

    task = asyncio.create_task(w.run(stop, swap))
    write(path, policy_text("v2"))
    async with asyncio.timeout(10):
        await swapped.wait()
    stop.set()
    async with asyncio.timeout(10):
        await task
    assert got == ["v2"]
