"""``redis_client``: one server, or (``THINKROUTE_REDIS_CLUSTER``) the cluster client with ThinkRoute's retries;
neither connects before its first command."""

from __future__ import annotations

from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import ClusterDownError, SlotNotCoveredError, TimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError

from workers.local.redis_conf import CLUSTER_CLIENT, acl_rules
from workers.settings import Settings
from workers.store.client import REDIS_RETRIES, redis_address, redis_client
from workers.store.cluster import RetryingCluster, RetryingPipeline


async def test_the_cluster_setting_gives_the_cluster_client_with_the_backoff() -> None:
    url = "redis://tr:pw@10.0.0.7:7001"
    client = redis_client(Settings(redis_url=SecretStr(url), redis_cluster=True))
    assert isinstance(client, RetryingCluster)
    assert client.retry.get_retries() == 0  # redis-py's own retries (no wait between them) are off
    assert client.backoff.get_retries() == REDIS_RETRIES
    retried = client.backoff._supported_errors
    assert {RedisConnectionError, ClusterDownError, SlotNotCoveredError} <= set(retried)
    assert TimeoutError not in retried  # as with one server: a Redis that never answers is reported at once
    assert isinstance(client.pipeline(transaction=False), RetryingPipeline)
    assert redis_address(client) == "cluster 10.0.0.7:7001"  # never the password
    await client.aclose()


async def test_without_it_one_server() -> None:
    client = redis_client(Settings(redis_url=SecretStr("redis://:pw@10.0.0.7:6380/2")))
    assert type(client) is Redis
    assert redis_address(client) == "10.0.0.7:6380/2"
    await client.aclose()


def test_the_cluster_clients_commands_are_granted_only_when_asked() -> None:
    assert CLUSTER_CLIENT == ("cluster|slots", "command")
    assert "+cluster|slots +command" in acl_rules("pw", cluster=True)
    assert "cluster" not in acl_rules("pw") and "+command" not in acl_rules("pw")
