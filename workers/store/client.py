"""The Redis client of the workers and the CLI, with its retry policy: one server, or a Redis Cluster."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from workers.errors import ConfigError
from workers.settings import Settings
from workers.store.cluster import RETRIED, cluster

# Transient Redis errors (a restart, a failover) are retried by redis-py itself, on every command and pipeline
# (the autopipeline's included): up to 9 retries with exponential backoff and equal jitter (nominal 0.2 s
# doubling to 5 s: 0.2, 0.4, ... 3.2, 5, 5, 5, 5; each wait between half and all of it), so a caller gives up
# only after Redis refused or dropped connections for 13-26 s. A timeout is not retried: a Redis that accepts
# and never answers (socket_timeout, 10 s) is reported at once instead of after every retry's full timeout.
# A cluster client (``workers.store.cluster``) retries the same way, also on CLUSTERDOWN and uncovered slots.
REDIS_RETRIES = 9
REDIS_BACKOFF = EqualJitterBackoff(cap=5.0, base=0.1)  # nominal base * 2**failures: 0.2 s first

RedisClient = Redis | RedisCluster  # what every Redis user of ThinkRoute takes


def redis_client(s: Settings) -> RedisClient:
    """The Redis client of the workers and the CLI, retrying connection errors (see above): a cluster client
    when ``THINKROUTE_REDIS_CLUSTER`` is set (the URL names one seed node)."""
    if s.redis_url is None:
        raise ConfigError("THINKROUTE_REDIS_URL is not set")
    url = s.redis_url.get_secret_value()
    if s.redis_cluster:
        backoff = Retry(REDIS_BACKOFF, retries=REDIS_RETRIES, supported_errors=RETRIED)
        return cluster(url, backoff, socket_timeout=10, socket_connect_timeout=5, health_check_interval=15)
    return Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=15,
        retry=Retry(REDIS_BACKOFF, retries=REDIS_RETRIES, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )


def redis_address(redis: RedisClient) -> str:
    """host:port/db of a client (a cluster's: its seed node's), never its password, for error messages."""
    if isinstance(redis, RedisCluster):
        node = redis.get_default_node() or next(iter(redis.nodes_manager.startup_nodes.values()), None)
        return "cluster" if node is None else f"cluster {node.host}:{node.port}"
    kw = redis.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
