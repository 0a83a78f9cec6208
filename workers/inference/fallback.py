"""Which endpoint answers a request: its primary (the route's or model's base URL), or the fallback.

Without a fallback configured a request goes to its primary exactly as before (no breaker). With one
(``INFERENCE__FALLBACK_BASE_URL``), each primary base URL has a circuit breaker (`workers.inference.breaker`):
a request whose primary is open goes straight to the fallback; one whose primary attempts ran out on
transient errors (or whose retries the breaker stopped, having opened meanwhile) goes to the fallback then,
with its own bounded retries (``INFERENCE__FALLBACK_MAX_ATTEMPTS``). A permanent error of the primary (a 400
of the request itself) is the answer: the fallback is not asked. The fallback model (``FALLBACK_MODEL``,
default: the routed one) gets the reasoning switch of its own family: the caller builds each payload for
the model it goes to. The outcome's attempts and LLM time add up both endpoints'.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from schemas.records import AnsweredBy
from workers.inference.breaker import Admission, Breaker, Breakers, Outcome
from workers.inference.client import Completion, LLMClient, LLMFailed, RetryPolicy, make_http_clients
from workers.settings import InferenceSettings

log = logging.getLogger(__name__)

PayloadFor = Callable[[str], dict[str, Any]]  # model -> the request body for it


class FallbackEvents(Protocol):
    """What the worker's metrics are told (`workers.runtime.metrics.WorkerMetrics`)."""

    def fallback(self, route: str, reason: str) -> None: ...


@dataclass(frozen=True)
class Fallback:
    """The fallback endpoint: its base URL, its model (None: the request's), its own client and retries."""

    base_url: str
    model: str | None
    llm: LLMClient


def make_fallback(inf: InferenceSettings) -> tuple[Fallback | None, list[httpx.AsyncClient]]:
    """The configured fallback and the HTTP clients it owns (to close), or (None, []) when none is set."""
    if inf.fallback_base_url is None:
        return None, []
    key = inf.fallback_api_key.get_secret_value() if inf.fallback_api_key else None
    http = make_http_clients(inf, key)
    retry = RetryPolicy(inf.fallback_max_attempts, inf.backoff_base_s, inf.backoff_max_s)
    return Fallback(inf.fallback_base_url, inf.fallback_model, LLMClient(http, retry)), http


def public_url(base_url: str) -> str:
    """A base URL as a record may keep it: without user info (credentials)."""
    url = httpx.URL(base_url)
    return str(url.copy_with(userinfo=b"")) if url.userinfo else base_url


class _BreakerGate:
    """One request's view of its primary's breaker (`workers.inference.client.AttemptGate`)."""

    def __init__(self, breaker: Breaker, admission: Admission) -> None:
        self.breaker, self.admission = breaker, admission

    def attempted(self, outcome: Outcome) -> None:
        self.breaker.record(self.admission, outcome)

    def retry_allowed(self) -> bool:
        return self.breaker.retry_allowed()


class Endpoints:
    """The primary client, the fallback (or None) and the primaries' breakers; one per worker."""

    def __init__(
        self,
        primary: LLMClient,
        fallback: Fallback | None = None,
        breakers: Breakers | None = None,
        events: FallbackEvents | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breakers = breakers
        self.events = events

    def breaker_states(self) -> Iterator[tuple[str, str, int]]:
        """(base URL without credentials, state, times opened) of every primary seen so far."""
        for url, b in self.breakers or ():
            yield public_url(url), b.state, b.opens

    async def complete(
        self, route: str, base_url: str, model: str, payload_for: PayloadFor
    ) -> tuple[Completion, AnsweredBy | None]:
        """The completion and who answered it (None without a fallback); LLMFailed (its ``answered_by`` set
        when a fallback is configured) when neither could."""
        if self.fallback is None:
            return await self.primary.complete(base_url, payload_for(model)), None
        primary = AnsweredBy(base_url=public_url(base_url), model=model, fallback=False)
        breaker = self.breakers[base_url] if self.breakers is not None else None
        admission = breaker.admit() if breaker is not None else Admission(0)
        attempts, spent, reason = 0, 0.0, "breaker_open"
        if admission is not None:
            gate = _BreakerGate(breaker, admission) if breaker is not None else None
            try:
                return await self.primary.complete(base_url, payload_for(model), gate), primary
            except LLMFailed as exc:
                if not exc.transient:  # the request itself is wrong: the fallback would say the same
                    exc.answered_by = primary
                    raise
                attempts, spent, reason = exc.attempts, exc.latency_s, "retries_exhausted"
                log.info(
                    "primary %s failed after %d attempts (%s); trying the fallback", primary.base_url, attempts, exc
                )
        return await self._fallback(route, model, payload_for, attempts, spent, reason)

    async def _fallback(
        self, route: str, model: str, payload_for: PayloadFor, attempts: int, spent: float, reason: str
    ) -> tuple[Completion, AnsweredBy]:
        fb = self.fallback
        assert fb is not None
        fb_model = fb.model or model
        by = AnsweredBy(base_url=public_url(fb.base_url), model=fb_model, fallback=True)
        if self.events is not None:
            self.events.fallback(route, reason)
        try:
            c = await fb.llm.complete(fb.base_url, payload_for(fb_model))
        except LLMFailed as exc:
            exc.attempts += attempts
            exc.latency_s += spent
            exc.answered_by = by
            raise
        return dataclasses.replace(c, attempts=c.attempts + attempts, latency_s=c.latency_s + spent), by
