"""The LLM client: httpx with explicit timeouts and limits, bounded retries.

Transient failures (timeouts, connection errors, 429, 5xx) are retried with exponential backoff and
full jitter, honouring Retry-After; anything else is permanent and fails at once.

Transport (``INFERENCE__HTTP_TRANSPORT``): ``asyncio`` (default) is one ``httpx.AsyncClient`` on
`workers.inference.http.transport.AsyncioTransport`, keep-alive connections up to the concurrency. ``httpcore``
is httpx's own transport, split over ``httpx.AsyncClient`` shards of one connection each (round robin):
one httpcore pool costs CPU that grows with its connection count (encode/httpx#3215). Measured against a
no-op server at 64 requests in flight, each at one full core: one client of 64 connections 262
requests/s (337 on uvloop), 16 clients of 4 651/s (820), 64 clients of 1 654/s (1,084 on uvloop); against
the zero-latency replay server the inference worker spent 1.0 ms of CPU per result with those shards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from schemas.records import AnsweredBy
from workers.errors import PermanentError, TransientError
from workers.inference.breaker import Outcome
from workers.inference.http.transport import AsyncioTransport
from workers.settings import HttpTransport, InferenceSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient LLM errors; its values are settings (``INFERENCE__MAX_ATTEMPTS``, ...)."""

    max_attempts: int
    base_s: float
    max_s: float

    @classmethod
    def from_settings(cls, inf: InferenceSettings) -> RetryPolicy:
        return cls(inf.max_attempts, inf.backoff_base_s, inf.backoff_max_s)

    def delay(self, attempt: int, retry_after_s: float | None, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]; Retry-After is a floor."""
        cap = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        delay = float(rand()) * cap
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_s))
        return delay


@dataclass(frozen=True)
class Completion:
    status_code: int
    body: dict[str, Any]
    attempts: int
    latency_s: float


class LLMFailed(PermanentError):
    """The request could not be completed: permanent error, or transient ones past the last attempt.

    ``body``: the backend's error body (a JSON object, as sent) when the last answer was an HTTP error;
    ``code``: why there was no usable HTTP answer otherwise (``timeout``, ``connection_error``,
    ``invalid_response``: a 200 that is not a chat completion). ``transient``: the last error was transient
    (attempts ran out, or the gate stopped the retries): another endpoint may answer it. ``answered_by``:
    the endpoint of the last attempt, when a fallback is configured."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        attempts: int,
        latency_s: float,
        body: dict[str, Any] | None = None,
        code: str | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.attempts = attempts
        self.latency_s = latency_s
        self.body = body
        self.code = code
        self.transient = transient
        self.answered_by: AnsweredBy | None = None  # set by `workers.inference.fallback` when one is configured


class AttemptGate(Protocol):
    """Told each attempt's outcome, asked before each retry (`workers.inference.fallback`: a circuit breaker)."""

    def attempted(self, outcome: Outcome) -> None: ...

    def retry_allowed(self) -> bool: ...


CONNECTIONS_PER_SHARD = 1
MAX_SHARDS = 64


def shard_count(connections: int) -> int:
    """Clients for ``connections`` concurrent requests: about CONNECTIONS_PER_SHARD each, at most MAX_SHARDS."""
    return max(1, min(MAX_SHARDS, math.ceil(connections / CONNECTIONS_PER_SHARD)))


def make_http_clients(inf: InferenceSettings, api_key: str | None) -> list[httpx.AsyncClient]:
    """Clients for ``inf.concurrency`` concurrent requests: one on the asyncio transport, or httpcore shards
    whose limits add up to at least that (``inf.http_transport``)."""
    connect_s, read_s, transport = inf.connect_timeout_s, inf.read_timeout_s, inf.http_transport
    if transport == "asyncio":
        return [make_http_client(connect_s, read_s, inf.concurrency, api_key, transport)]
    shards = shard_count(inf.concurrency)
    per = math.ceil(inf.concurrency / shards)
    return [make_http_client(connect_s, read_s, per, api_key, transport) for _ in range(shards)]


class _SetCookiesOnly(httpx.Cookies):
    """Cookies that skip the urllib cookie-jar round trip for responses without ``Set-Cookie``: httpx builds
    urllib request/response adapters for every response otherwise (~30 us each, a tenth of the worker's
    CPU per result), to find nothing to keep."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class LLMHttpClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose cookie store is `_SetCookiesOnly` (same cookies kept, less CPU)."""

    def __init__(self, *args: Any, cookies: Any = None, **kwargs: Any) -> None:
        self._llm_cookies: httpx.Cookies = _SetCookiesOnly(cookies)
        super().__init__(*args, **kwargs)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._llm_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._llm_cookies = _SetCookiesOnly(cookies)


def make_http_client(
    connect_s: float, read_s: float, max_connections: int, api_key: str | None, transport: HttpTransport
) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    timeout = httpx.Timeout(connect=connect_s, read=read_s, write=30.0, pool=None)
    if transport == "asyncio":
        return LLMHttpClient(timeout=timeout, transport=AsyncioTransport(limits), headers=headers)
    return LLMHttpClient(timeout=timeout, limits=limits, headers=headers)


JSON_HEADERS = {"Content-Type": "application/json"}


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """The bytes httpx's ``json=`` would send (compact, UTF-8, no NaN), without its per-call overhead."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class LLMClient:
    def __init__(
        self,
        http: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        retry: RetryPolicy,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.clients = [http] if isinstance(http, httpx.AsyncClient) else list(http)
        if not self.clients:
            raise ValueError("LLMClient needs at least one httpx client")
        self._next = itertools.cycle(self.clients)
        self.retry = retry
        self._sleep = sleep
        self.retries = 0
        self._urls: dict[str, httpx.URL] = {}

    async def complete(self, base_url: str, payload: Mapping[str, Any], gate: AttemptGate | None = None) -> Completion:
        """The completion, retrying transient errors up to ``max_attempts`` (while ``gate`` allows); LLMFailed
        otherwise."""
        url = self._urls.get(base_url)
        if url is None:  # parsed once per base URL, not per request
            url = self._urls[base_url] = httpx.URL(base_url.rstrip("/") + "/chat/completions")
        content = encode_json(payload)
        started = time.monotonic()
        last = "no attempt"
        status: int | None = None
        failure: Exception | None = None
        attempt = 0
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                done = await self._once(url, content, attempt, started)
            except TransientError as exc:
                last, status, failure = str(exc), getattr(exc, "status_code", None), exc
                if gate is not None:
                    gate.attempted(Outcome.FAILURE)
                if attempt == self.retry.max_attempts:
                    break
                if gate is not None and not gate.retry_allowed():
                    last = f"circuit open, not retried: {last}"
                    break
                delay = self.retry.delay(attempt, exc.retry_after_s)
                self.retries += 1
                log.info("LLM attempt %d failed (%s); retrying in %.2fs", attempt, last, delay)
                await self._sleep(delay)
            except PermanentError as exc:
                if gate is not None:
                    gate.attempted(Outcome.NEUTRAL)
                raise LLMFailed(
                    str(exc),
                    status_code=getattr(exc, "status_code", None),
                    attempts=attempt,
                    latency_s=time.monotonic() - started,
                    body=getattr(exc, "error_body", None),
                    code=getattr(exc, "error_code", None),
                ) from exc
            else:
                if gate is not None:
                    gate.attempted(Outcome.SUCCESS)
                return done
        raise LLMFailed(
            f"gave up after {attempt} attempts: {last}",
            status_code=status,
            attempts=attempt,
            latency_s=time.monotonic() - started,
            body=getattr(failure, "error_body", None),
            code=getattr(failure, "error_code", None),
            transient=True,
        )

    async def _once(self, url: httpx.URL, content: bytes, attempt: int, started: float) -> Completion:
        try:
            resp = await next(self._next).post(url, content=content, headers=JSON_HEADERS)
        except httpx.TimeoutException as exc:
            raise _with_status(TransientError(f"timeout: {type(exc).__name__}"), None, "timeout") from exc
        except httpx.TransportError as exc:
            err = TransientError(f"transport error: {type(exc).__name__}: {exc}")
            raise _with_status(err, None, "connection_error") from exc
        if resp.status_code == 200:
            try:
                body = json.loads(resp.content)  # JSON is UTF-8 (RFC 8259): no charset sniffing
            except ValueError as exc:
                raise _with_status(TransientError("200 with a body that is not JSON"), 200, "invalid_response") from exc
            if not isinstance(body, dict) or not body.get("choices"):
                raise _with_status(PermanentError("200 without choices"), 200, "invalid_response")
            return Completion(200, body, attempt, time.monotonic() - started)
        detail = _error_detail(resp)
        if resp.status_code in RETRYABLE_STATUS:
            err = TransientError(f"HTTP {resp.status_code}: {detail}", retry_after_s=_retry_after(resp))
            raise _with_status(err, resp.status_code, body=_error_body(resp))
        permanent = PermanentError(f"HTTP {resp.status_code}: {detail}")
        raise _with_status(permanent, resp.status_code, body=_error_body(resp))


def _with_status(
    exc: Exception, status: int | None, code: str | None = None, body: dict[str, Any] | None = None
) -> Exception:
    exc.status_code = status  # type: ignore[attr-defined]
    exc.error_code = code  # type: ignore[attr-defined]
    exc.error_body = body  # type: ignore[attr-defined]
    return exc


MAX_ERROR_BODY = 16_384


def _error_body(resp: httpx.Response) -> dict[str, Any] | None:
    """An error response's JSON object body as sent (None: not a JSON object, or over MAX_ERROR_BODY bytes)."""
    if len(resp.content) > MAX_ERROR_BODY:
        return None
    try:
        body = json.loads(resp.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _error_detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict):
            err = body.get("error", body)
            msg = err.get("message") if isinstance(err, dict) else None
            if msg:
                return str(msg)[:300]
    except ValueError:
        pass
    return resp.text[:300]
