"""Prometheus metrics of ``thinkroute serve`` (served on ``ApiSettings.metrics_port`` by
``workers.runtime.metrics_server``): requests by route template (never an id), method and status, and their
latency by route."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector

API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
UNMATCHED = "unmatched"  # the route label of a request no route matched (its path is never a label)


class ApiMetrics:
    stage = "api"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "thinkroute_api_requests",
            "HTTP requests answered, by route template",
            ["route", "method", "status"],
            registry=r,
        )
        self.seconds = Histogram(
            "thinkroute_api_request_seconds",
            "time to answer (streamed bodies included)",
            ["route"],
            buckets=API_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.seconds.labels(route).observe(seconds)

    def ready(self) -> bool:
        """``/ready`` of the metrics port: the API serves once this exists."""
        return True
