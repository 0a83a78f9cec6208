"""A policy that names its own classifier (``classifier:``): path resolution, the watcher loading and checking
the new classifier, the (policy, classifier) pair in the router, and the worker swapping it between batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from aiokafka import TopicPartition

from schemas.messages import RoutedMessage
from tests.fakes import FakeConsumer
from tests.helpers import until
from tests.unit.test_policy import LABELS
from tests.unit.test_policy_reload import FakeClassifier, in_use, make_artifact, reloads, watched, write
from tests.unit.test_router_pipeline import GatedClassifier, GatedProducer, record, settings
from workers.classifier.gain import GainModel
from workers.classifier.model import Classification, Classifier
from workers.errors import ConfigError
from workers.router.pair import Pair
from workers.router.policy import Policy, Rule, check_policy, load_policy
from workers.router.worker import RouterWorker

X_LABELS = [f"x-{label}" for label in LABELS]


def custom_policy(version: str, classifier: str | None, categories: list[str]) -> str:
    doc: dict[str, Any] = {"version": version, "categories": {c: {"use_reasoning": True} for c in categories}}
    if classifier is not None:
        doc["classifier"] = classifier
    return yaml.safe_dump(doc)


def test_a_relative_classifier_resolves_against_the_policy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "policies").mkdir()
    monkeypatch.chdir(tmp_path / "policies")  # never against the working directory
    path = tmp_path / "policies" / "p.yaml"
    write(path, custom_policy("v1", "../arts/custom", []))
    assert load_policy(path).classifier == str(tmp_path / "arts" / "custom")
    write(path, custom_policy("v1", str(tmp_path / "abs" / "." / "c"), []))
    assert load_policy(path).classifier == str(tmp_path / "abs" / "c")
    write(path, custom_policy("v1", None, []))
    assert load_policy(path).classifier is None
    assert load_policy().classifier is None  # the shipped table: the configured classifier


def test_a_policy_naming_another_artefact_comes_with_it(tmp_path: Path) -> None:
    path, w, m, loads = watched(tmp_path)
    make_artifact(tmp_path / "arts" / "custom", X_LABELS, "custom-1")
    write(path, custom_policy("v2", "arts/custom", X_LABELS[:2]))
    swap = w.check()
    assert swap is not None and swap.policy.version == "v2" and swap.classifier is not None
    new = cast(FakeClassifier, swap.classifier)
    assert new.artifact == (tmp_path / "arts" / "custom").resolve() and new.version == "custom-1"
    assert (w.artifact, w.labels, w.classifier_version) == (new.artifact, X_LABELS, "custom-1")
    assert (in_use(m), reloads(m, "loaded"), new.closed) == ("v2", 1, 0)
    assert m.registry.get_sample_value("thinkroute_policy_info", {"version": "v2", "classifier": "custom-1"}) == 1
    # the same artefact again (another spelling of its path): the policy only, nothing loaded
    write(path, custom_policy("v3", str(tmp_path / "arts" / "x" / ".." / "custom"), X_LABELS))
    swap = w.check()
    assert swap is not None and swap.policy.version == "v3" and swap.classifier is None
    assert len(loads.opened) == 2  # the first one and custom-1
    # back to the default (no key): loaded again, its labels checked
    write(path, custom_policy("v4", None, LABELS[:1]))
    swap = w.check()
    assert swap is not None and swap.classifier is not None and swap.classifier.version == "shipped"


def test_the_default_artefact_named_explicitly_swaps_the_policy_only(tmp_path: Path) -> None:
    path, w, m, loads = watched(tmp_path)
    write(path, custom_policy("v2", "shipped", LABELS[:3]))  # the default's own dir, relative
    swap = w.check()
    assert swap is not None and swap.classifier is None and swap.policy.version == "v2"
    assert len(loads.opened) == 1 and reloads(m, "loaded") == 1


def test_an_artefact_that_does_not_load_keeps_the_old_pair(tmp_path: Path) -> None:
    path, w, m, loads = watched(tmp_path)
    before = (w.policy, w.artifact, w.labels)
    write(path, custom_policy("v2", "no/such/artefact", []))
    assert w.check() is None and w.check() is None  # the same file is not tried again
    assert (w.policy, w.artifact, w.labels) == before
    assert (reloads(m, "failed"), reloads(m, "loaded"), in_use(m), len(loads.opened)) == (1, 0, "v1", 1)


def test_a_policy_that_does_not_fit_the_new_labels_keeps_the_old_pair_and_closes_the_new(tmp_path: Path) -> None:
    path, w, m, loads = watched(tmp_path)
    make_artifact(tmp_path / "custom", X_LABELS, "custom-1")
    write(path, custom_policy("v2", "custom", LABELS[:1]))  # rules on the old labels
    assert w.check() is None
    rejected = loads.opened[-1]
    assert rejected.version == "custom-1" and rejected.closed == 1
    assert (w.policy.version, w.labels, reloads(m, "failed"), in_use(m)) == ("v1", LABELS, 1, "v1")
    write(path, custom_policy("v3", "custom", X_LABELS[:1]))  # fixed: loaded
    swap = w.check()
    assert swap is not None and swap.classifier is not None and swap.classifier is not rejected


def test_a_gain_head_must_be_fitted_on_the_classifiers_labels() -> None:
    gain = GainModel(version="g", labels=LABELS, weights=[0.0], center=[0.0], scale=[1.0])
    policy = Policy(version="v", gain=gain)
    check_policy(policy, LABELS)
    with pytest.raises(ConfigError, match="gain head g was fitted on other labels"):
        check_policy(policy, X_LABELS)


class Closing(FakeClassifier):
    def __init__(self, version: str) -> None:
        self.version, self.labels, self.closed = version, X_LABELS, 0


def test_pair_offers_wait_for_switch_and_superseded_ones_are_closed() -> None:
    a, b, c = Closing("a"), Closing("b"), Closing("c")
    pair = Pair(Policy(version="v1"), cast(Classifier, a))
    pair.offer(Policy(version="v2"))  # same classifier: at once
    assert (pair.policy.version, pair.pending) == ("v2", None)
    pair.offer(Policy(version="v3"), cast(Classifier, b))
    assert pair.policy.version == "v2" and pair.classifier is a  # waits for switch
    pair.offer(Policy(version="v4"))  # a policy for the waiting classifier
    pair.offer(Policy(version="v5"), cast(Classifier, c))  # supersedes b, which no batch used
    assert (b.closed, pair.policy.version) == (1, "v2")
    assert pair.switch() is a and (pair.policy.version, pair.classifier) == ("v5", c)
    assert pair.switch() is None
    pair.offer(Policy(version="v6"), cast(Classifier, b))
    pair.discard()
    assert (a.closed, b.closed, c.closed, pair.pending) == (0, 2, 0, None)  # a: the caller closes it


class Relabelled(GatedClassifier):
    """Another model: its labels prefixed ``x-``; it counts its closes."""

    version = "relabelled-1"
    labels = X_LABELS

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        return [Classification("x-" + c.category, c.confidence, False, 8, 0.99) for c in super().classify(texts)]

    def close(self) -> None:
        self.closed += 1


class Old(Relabelled):
    version = "test"
    labels = LABELS

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        return GatedClassifier.classify(self, texts)


async def test_the_worker_swaps_the_pair_only_once_the_batch_in_flight_is_decided() -> None:
    consumer, producer = FakeConsumer(assignment=[TopicPartition("prompts", p) for p in (0, 1)]), GatedProducer()
    producer.open = True
    old, new = Old(), Relabelled()
    s = settings(batch_max=8, batch_wait_ms=10_000, depth=2)
    worker = RouterWorker(s, cast(Any, consumer), cast(Any, producer), cast(Any, old), load_policy())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    consumer.feed([record(0, 0)])
    await until(lambda: old.calls == [1])  # in flight on the old classifier
    v2 = Policy(version="v2", categories={"x-math": Rule(use_reasoning=False)})
    worker._swap(v2, cast(Classifier, new))
    consumer.feed([record(1, 0)])
    await until(lambda: len(worker.batcher) == 1)  # fetched, held back: the old one has a free slot, unused
    assert (old.calls, new.calls, old.closed, worker.classifier) == ([1], [], 0, old)
    old.gate.release()
    await until(lambda: new.calls == [1])
    assert (old.closed, worker.policy.version, worker.classifier) == (1, "v2", new)
    new.gate.release()
    await until(lambda: len(producer.sent.get("direct", [])) == 1 and len(producer.sent.get("reasoning", [])) == 1)
    stop.set()
    await task
    first = RoutedMessage.model_validate_json(producer.sent["reasoning"][0]).route  # the shipped table: math
    second = RoutedMessage.model_validate_json(producer.sent["direct"][0]).route
    assert (first.category, first.policy_version, first.classifier_version) == ("math", "score-v1", "test")
    assert (second.category, second.policy_version, second.classifier_version) == ("x-math", "v2", "relabelled-1")
    assert (old.closed, new.closed) == (1, 0)  # the one in use is the caller's (serve) to close


class EmbeddingGated(GatedClassifier):
    """Gives each prompt a 2-value embedding only when asked for one; records what each call asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[bool] = []

    def classify(self, texts: Sequence[str], embeddings: bool = True) -> list[Classification]:
        self.asked.append(embeddings)
        out = super().classify(texts)
        return [
            Classification(c.category, 0.99, False, 8, 0.99, embedding=(1.0, 0.0) if embeddings else None) for c in out
        ]


async def test_a_policy_reading_embeddings_that_arrives_mid_batch_gets_them_for_that_batch() -> None:
    consumer, producer = FakeConsumer(assignment=[TopicPartition("prompts", 0)]), GatedProducer()
    producer.open = True
    clf = EmbeddingGated()
    worker = RouterWorker(
        settings(batch_max=8), cast(Any, consumer), cast(Any, producer), cast(Any, clf), load_policy()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    consumer.feed([record(0, 0)])
    await until(lambda: clf.asked == [False])  # the shipped table reads no embeddings: the first tier may decide
    n = 3 + len(LABELS) + 2  # score, confidence, log tokens, the probabilities, the embedding
    gain = GainModel(
        version="g", features="embedding-v1", labels=LABELS, weights=[0.0] * n, center=[0.0] * n, scale=[1.0] * n
    )
    worker._swap(Policy(version="v2", gain=gain))  # the same classifier: the policy is replaced at once
    clf.gate.release()
    await until(lambda: clf.asked == [False, True])  # classified again, with embeddings, off the event loop
    clf.gate.release()
    await until(lambda: sum(len(v) for v in producer.sent.values()) == 1)
    stop.set()
    await task
    (sent,) = [RoutedMessage.model_validate_json(m).route for v in producer.sent.values() for m in v]
    assert (sent.policy_version, sent.category, worker.stats.routed["reasoning"] + worker.stats.routed["direct"]) == (
        "v2",
        "math",
        1,
    )
