"""Prometheus metrics of one worker process (served by :mod:`workers.runtime.metrics_server`).

Each worker owns a :class:`WorkerMetrics` with its own ``CollectorRegistry`` (nothing global: several
workers can run in one process, as the tests do). Every series is ``thinkroute_*`` with its unit in the name
(``_seconds``, ``_records``, ``_total`` for counters), plus prometheus_client's ``process_*`` and
``python_*``. The names of other exporters stay theirs: kafka_exporter's ``kafka_consumergroup_lag*`` come
from the kafka-exporter service only (the broker's view of each group), so a query without a ``job`` filter
never counts a partition's lag twice; and the vLLM semantic router's ``llm_*`` are not reused either.

Consumer lag is computed at scrape time from the fetch-time high watermark (``consumer.highwater(tp)``,
right on Tansu and Kafka alike) minus the offset this member last committed for the partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.runtime.breaker_metrics import BreakerCollector, BreakerStates

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.messages import RouteDecision
    from schemas.records import ExplorationRecord, RequestResult

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CLASSIFIER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TOKEN_KINDS = ("prompt", "completion", "reasoning")


def consumer_joined(consumer: AIOKafkaConsumer | None) -> bool:
    """Whether ``consumer`` is a member of its group now: it owns partitions, or its last join completed with
    none (an idle replica: more members than partitions).

    aiokafka has no public flag for the second case: its subscription state says whether a (re)assignment is
    in progress (true from ``subscribe`` until the first SyncGroup answer, and again during a rebalance) and
    its group coordinator holds the member id and generation the broker gave it (reset on leaving the group).
    """
    if consumer is None:
        return False
    if consumer.assignment():
        return True
    state = getattr(consumer, "_subscription", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if state is None or coordinator is None or getattr(state, "subscription", None) is None:
        return False
    member_id, generation = getattr(coordinator, "member_id", ""), getattr(coordinator, "generation", -1)
    return not state.reassignment_in_progress and bool(member_id) and isinstance(generation, int) and generation >= 0


class WorkerMetrics:
    """Every metric a router or an inference worker exports; ``stage`` is ``router`` or ``inference``."""

    def __init__(self, stage: str, group: str, registry: CollectorRegistry | None = None) -> None:
        self.stage = stage
        self.group = group
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._in = Counter("thinkroute_messages_in", "records consumed", ["stage", "topic"], registry=r)
        self._out = Counter(
            "thinkroute_messages_out", "records published (acks=all), by topic", ["stage", "topic"], registry=r
        )
        self.batch_size = Histogram(
            "thinkroute_batch_size_records",
            "records per micro-batch (router) or fetch (inference)",
            ["stage"],
            buckets=BATCH_BUCKETS,
            registry=r,
        ).labels(stage)
        self.classifier_latency = Histogram(
            "thinkroute_classifier_latency_seconds",
            "classifier inference time per micro-batch",
            ["classifier"],
            buckets=CLASSIFIER_BUCKETS,
            registry=r,
        ).labels("category")
        self.decisions = Counter(
            "thinkroute_reasoning_decisions",
            "routing decisions: reasoning enabled or not, by category, route, model and effort",
            ["category", "route", "model", "enabled", "effort"],
            registry=r,
        )
        self.requests = Counter(
            "thinkroute_requests",
            "LLM requests recorded in Redis (duplicate: already recorded, skipped)",
            ["route", "status"],
            registry=r,
        )
        self.stopped_requests = Counter(
            "thinkroute_inference_stopped",
            "routed messages not started because their job was cancelled or expired",
            ["route"],
            registry=r,
        )
        self.tokens = Counter("thinkroute_tokens", "tokens of recorded results", ["route", "kind"], registry=r)
        self.request_latency = Histogram(
            "thinkroute_request_latency_seconds",
            "LLM call latency, retries included",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        # routing value (#14): grades, and the tokens of both answers of each explored request (the savings panel)
        self.graded = Counter(
            "thinkroute_graded_results",
            "recorded results graded against their reference (metadata.reference), by route and correct",
            ["route", "correct"],
            registry=r,
        )
        self.graded_shadow = Counter(
            "thinkroute_graded_shadow_answers",
            "recorded exploration (shadow) answers graded against their reference, by the shadow's route and correct",
            ["route", "correct"],
            registry=r,
        )
        self.explored_tokens = Counter(
            "thinkroute_explored_tokens",
            "tokens of the exploration sample's answers: arm=routed (the result) or shadow (the other arm)",
            ["arm", "route", "kind"],
            registry=r,
        )
        self.retries = Counter("thinkroute_llm_retries", "LLM attempts beyond the first", ["route"], registry=r)
        self.fallbacks = Counter(
            "thinkroute_llm_fallback",
            "requests sent to the fallback endpoint: breaker_open (primary skipped) or retries_exhausted",
            ["route", "reason"],
            registry=r,
        )
        self._breakers = BreakerCollector()
        r.register(self._breakers)
        self.dead = Counter("thinkroute_dead_letters", "records sent to the dead-letter topic", ["stage"], registry=r)
        self.dead.labels(stage)
        self._policy_reloads = Counter(
            "thinkroute_policy_reloads",
            "policy file changes seen by the router: loaded, unchanged (same content) or failed (old policy kept)",
            ["result"],
            registry=r,
        )
        self._policy = Info(
            "thinkroute_policy", "the routing policy version in use and its classifier's (router)", registry=r
        )
        self._committed: dict[TopicPartition, int] = {}
        self._lag = _ConsumerCollector(self)
        r.register(self._lag)
        # RSS, CPU, open fds (process_*), the interpreter (python_info) and its GC (python_gc_*): read at scrape
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    # --- called by the workers -------------------------------------------------------------------
    def consumed(self, topic: str, n: int = 1) -> None:
        self._in.labels(self.stage, topic).inc(n)

    def produced(self, topic: str, n: int = 1) -> None:
        self._out.labels(self.stage, topic).inc(n)

    def decided(self, d: RouteDecision) -> None:
        enabled = "true" if d.use_reasoning else "false"
        self.decisions.labels(d.category, d.route, d.model, enabled, d.reasoning_effort or "").inc()

    def dead_letter(self, topic: str) -> None:
        self.dead.labels(self.stage).inc()
        self.produced(topic)

    def result(self, r: RequestResult, written: bool) -> None:
        """One LLM call finished (completed or failed) and its result went to Redis (``written``: first time)."""
        route = r.route.route
        self.request_latency.labels(route).observe(r.llm_latency_s or 0.0)
        if r.attempts > 1:
            self.retries.labels(route).inc(r.attempts - 1)
        if not written:
            self.requests.labels(route, "duplicate").inc()
            return
        self.requests.labels(route, r.status).inc()
        u = r.usage
        for kind, n in zip(TOKEN_KINDS, (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens), strict=True):
            self.tokens.labels(route, kind).inc(n)
            if r.route.explore:
                self.explored_tokens.labels("routed", route, kind).inc(n)
        if r.grade is not None:
            self.graded.labels(route, "true" if r.grade.correct else "false").inc()

    def explored(self, e: ExplorationRecord, written: bool) -> None:
        """An exploration (shadow) answer was stored (``written``: first time): its grade and its tokens, never in
        the routed series (``thinkroute_tokens_total``, ``thinkroute_graded_results_total``)."""
        if not written:
            return
        route, u = e.route.route, e.usage
        for kind, n in zip(TOKEN_KINDS, (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens), strict=True):
            self.explored_tokens.labels("shadow", route, kind).inc(n)
        if e.grade is not None:
            self.graded_shadow.labels(route, "true" if e.grade.correct else "false").inc()

    def fallback(self, route: str, reason: str) -> None:
        self.fallbacks.labels(route, reason).inc()

    def watch_breakers(self, states: BreakerStates) -> None:
        """``states()``: (base URL, closed | open | half_open, times opened) of each primary, read at scrape."""
        self._breakers.states = states

    def policy_in_use(self, version: str, classifier: str = "") -> None:
        self._policy.info({"version": version, "classifier": classifier})

    def policy_reload(self, result: str) -> None:
        self._policy_reloads.labels(result).inc()

    def stopped(self, route: str) -> None:
        self.stopped_requests.labels(route).inc()

    def skipped_duplicate(self, route: str) -> None:
        self.requests.labels(route, "duplicate").inc()

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions revoked: their next owner reports their lag."""
        for tp in tps:
            self._committed.pop(tp, None)

    def watch(self, consumer: AIOKafkaConsumer) -> None:
        self._lag.consumer = consumer

    # --- read by the metrics server --------------------------------------------------------------
    def ready(self) -> bool:
        """The watched consumer is a member of its group (``/ready``): it consumes, or stands by, idle."""
        return consumer_joined(self._lag.consumer)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ConsumerCollector(Collector):
    """Scrape-time view of the watched consumer: lag, commits, high watermarks, assignment, membership."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None

    def collect(self) -> Iterator[Metric]:
        labels = ["consumergroup", "topic", "partition"]
        lag = GaugeMetricFamily(
            "thinkroute_consumer_lag_records",
            "high watermark (fetch time) minus this member's last committed offset, per owned partition",
            labels=labels,
        )
        lag_sum = GaugeMetricFamily(
            "thinkroute_consumer_lag_sum_records", "lag of this member's partitions, per topic", labels=labels[:2]
        )
        current = GaugeMetricFamily(
            "thinkroute_committed_offset",
            "offset this member last committed, per owned partition",
            labels=labels,
        )
        end = GaugeMetricFamily(
            "thinkroute_partition_high_watermark",
            "high watermark of the partition at this member's last fetch",
            labels=["topic", "partition"],
        )
        owned = GaugeMetricFamily(
            "thinkroute_assigned_partitions", "partitions assigned to this member", labels=["topic"]
        )
        joined = GaugeMetricFamily(
            "thinkroute_consumer_joined",
            "1 when this member has joined its consumer group (what /ready answers 200 to), else 0",
            labels=["consumergroup"],
        )
        group, consumer = self.metrics.group, self.consumer
        joined.add_metric([group], 1 if consumer_joined(consumer) else 0)
        sums: dict[str, int] = {}
        counts: dict[str, int] = {}
        for tp in sorted(consumer.assignment()) if consumer is not None else []:
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
            hw = consumer.highwater(tp) if consumer is not None else None
            if hw is None:
                continue
            end.add_metric([tp.topic, str(tp.partition)], hw)
            done = self.metrics._committed.get(tp)
            if done is None:
                continue
            n = max(hw - done, 0)
            lag.add_metric([group, tp.topic, str(tp.partition)], n)
            current.add_metric([group, tp.topic, str(tp.partition)], done)
            sums[tp.topic] = sums.get(tp.topic, 0) + n
        for topic, n in sorted(sums.items()):
            lag_sum.add_metric([group, topic], n)
        for topic, c in sorted(counts.items()):
            owned.add_metric([topic], c)
        yield from (lag, lag_sum, current, end, owned, joined)
