"""One exception hierarchy: transient errors are retried with backoff, permanent ones are not."""

from __future__ import annotations


class ThinkRouteError(Exception):
    """Base of every error ThinkRoute raises on purpose."""


class TransientError(ThinkRouteError):
    """Worth retrying: timeouts, connection resets, 429, 5xx, a broker or Redis briefly away."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(ThinkRouteError):
    """Retrying cannot help: bad input, a 4xx from the LLM, an unknown model."""


class BadMessage(PermanentError):
    """A Kafka message that does not parse as the expected schema (goes to the dead-letter topic)."""


class BadInput(PermanentError):
    """A batch file line that cannot be submitted; carries the line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class ConfigError(PermanentError):
    """Settings or a policy file that cannot work."""
