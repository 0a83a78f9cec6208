"""The Redis Cluster client (``THINKROUTE_REDIS_CLUSTER=true``): redis-py's ``RedisCluster`` with the retry policy
of the single-server client (``workers.store.client``).

redis-py's cluster client follows MOVED and ASK itself, and on a connection error, ``CLUSTERDOWN`` or an uncovered
slot it re-reads the topology and tries again, but without waiting between attempts for a command (0.25 s for a
pipeline): a master that takes a second to come back (its AOF replayed) exhausts any number of such retries in
milliseconds. Here its own retries are off and every command and every pipeline is retried as a whole with the
single server's backoff (``REDIS_BACKOFF``, ``REDIS_RETRIES``: 13-26 s in all) on connection errors,
``CLUSTERDOWN`` and uncovered slots; the topology is re-read before each attempt (redis-py marks it stale on
such an error; before a pipeline's next attempt every connection is closed, as redis-py does between its own
pipeline retries). A timeout is not retried, as with one server.

A pipeline (never a transaction) is split by redis-py into one per master. When one master's part fails on the
connection, its commands come back as errors while the others' ran; the whole pipeline is then sent again, so
every pipeline ThinkRoute sends is idempotent (the scripts of ``workers.store.lua`` are) or on one job's slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError

T = TypeVar("T")

# what a restarting master or a failover answers, retried with backoff (a TimeoutError is not: see the module)
# (redis-py types Retry's errors as RedisError ones; SlotNotCoveredError is a RedisClusterException, no RedisError)
_ERRORS = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)
RETRIED = cast(tuple[type[RedisError], ...], _ERRORS)


async def _attempt(call: Callable[[], Awaitable[T]]) -> T:
    """One attempt; a topology read that reached no node is a connection error (retried, and what the CLI
    reports as Redis unreachable), not redis-py's bare RedisClusterException."""
    try:
        return await call()
    except RedisClusterException as exc:
        if isinstance(exc.__cause__, RedisConnectionError):
            raise RedisConnectionError(str(exc)) from exc
        raise


async def _ignore(error: Exception) -> None:
    return None


class RetryingCluster(RedisCluster):
    """``RedisCluster`` retrying each command with ``backoff`` (a Retry over ``RETRIED``); build with ``cluster``."""

    def __init__(self, backoff: Retry, **kwargs: Any) -> None:
        super().__init__(retry=Retry(NoBackoff(), retries=0), **kwargs)
        self.backoff = backoff

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        once = super().execute_command
        return await self.backoff.call_with_retry(lambda: _attempt(lambda: once(*args, **kwargs)), _ignore)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if transaction or shard_hint:
            raise RedisClusterException("ThinkRoute's cluster pipelines are never transactions")
        return RetryingPipeline(self)  # type: ignore[abstract]  # as redis-py builds its ClusterPipeline


class RetryingPipeline(ClusterPipeline):
    """A non-transactional cluster pipeline sent again as a whole (with the client's backoff) while a part of
    it fails on the connection (``RETRIED``); its other errors are returned or raised as redis-py does."""

    def __init__(self, client: RetryingCluster) -> None:
        super().__init__(client, False)
        self.backoff = client.backoff
        self._queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> ClusterPipeline:
        self._queued.append((args, dict(kwargs)))
        return super().execute_command(*args, **kwargs)

    async def reset(self) -> None:  # type: ignore[override]  # ClusterPipeline's reset, not the command RESET
        self._queued = []
        await super().reset()  # type: ignore[no-untyped-call]

    async def _disconnect(self, error: Exception) -> None:
        """Before the next attempt, as redis-py between its own pipeline retries: every connection closed (a
        restarted master leaves its pooled connections dead, each of which would fail one attempt) and the
        slot map read again."""
        await self.cluster_client.aclose()

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        queued, first = list(self._queued), True

        async def once() -> list[Any]:
            nonlocal first
            if not first:  # redis-py emptied the queue after the last attempt: the same commands again
                for args, kwargs in queued:
                    super(RetryingPipeline, self).execute_command(*args, **dict(kwargs))
            first = False
            results: list[Any] = await super(RetryingPipeline, self).execute(False, allow_redirections)
            lost = next((r for r in results if isinstance(r, RETRIED)), None)
            if lost is not None:
                raise lost
            return results

        if not queued:
            return []
        results = await self.backoff.call_with_retry(lambda: _attempt(once), self._disconnect)
        self._queued = []
        if raise_on_error:
            error = next((r for r in results if isinstance(r, Exception)), None)
            if error is not None:
                raise error
        return results


def cluster(url: str, backoff: Retry, **kwargs: Any) -> RetryingCluster:
    """A cluster client from one seed node's URL (``redis://[user:password@]host:port``); the other masters
    are found with ``CLUSTER SLOTS``."""
    return cast(RetryingCluster, RetryingCluster.from_url(url, backoff=backoff, **kwargs))
