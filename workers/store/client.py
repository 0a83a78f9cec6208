"""The Redis client of the workers and the CLI, with its retry policy."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from workers.errors import ConfigError
from workers.settings import Settings

# Transient Redis errors (a restart, a failover) are retried by redis-py itself, on every command and pipeline
# (the autopipeline's included): up to 9 retries with exponential backoff and equal jitter (nominal 0.2 s
# doubling to 5 s: 0.2, 0.4, ... 3.2, 5, 5, 5, 5; each wait between half and all of it), so a caller gives up
# only after Redis refused or dropped connections for 13-26 s. A timeout is not retried: a Redis that accepts
# and never answers (socket_timeout, 10 s) is reported at once instead of after every retry's full timeout.
REDIS_RETRIES = 9
REDIS_BACKOFF = EqualJitterBackoff(cap=5.0, base=0.1)  # nominal base * 2**failures: 0.2 s first


def redis_client(s: Settings) -> Redis:
    """The Redis client of the workers and the CLI, retrying connection errors (see above)."""
    if s.redis_url is None:
        raise ConfigError("THINKROUTE_REDIS_URL is not set")
    return Redis.from_url(
        s.redis_url.get_secret_value(),
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry=Retry(REDIS_BACKOFF, retries=REDIS_RETRIES, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
