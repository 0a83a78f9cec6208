"""The primaries' circuit breakers as Prometheus series, read at scrape time (`workers.inference.breaker`).

``thinkroute_llm_breaker_state{base_url, state}`` is 1 for each primary's current state (closed, half_open,
open) and 0 for the others; ``thinkroute_llm_breaker_opens_total{base_url}`` counts its openings (a failed
probe too). Only primaries seen since the worker started appear, and only with a fallback configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BreakerStates = Callable[[], Iterable[tuple[str, str, int]]]  # () -> (base URL, state, times opened) each
BREAKER_STATES = ("closed", "half_open", "open")


class BreakerCollector(Collector):
    def __init__(self) -> None:
        self.states: BreakerStates = tuple

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "thinkroute_llm_breaker_state",
            "1 for the breaker state of each primary base URL",
            labels=["base_url", "state"],
        )
        opens = CounterMetricFamily(
            "thinkroute_llm_breaker_opens", "times a primary's breaker opened (a failed probe too)", labels=["base_url"]
        )
        for url, now, opened in self.states():
            for name in BREAKER_STATES:
                state.add_metric([url, name], 1 if name == now else 0)
            opens.add_metric([url], opened)
        yield from (state, opens)
