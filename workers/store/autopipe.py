"""Automatic pipelining: Redis commands issued concurrently by many tasks share one round trip.

The inference worker has up to ``concurrency`` requests in flight, each of which asks Redis whether its
request is already recorded and later writes its result. Sent one by one, every call costs a round trip
and a pass through the connection pool; here each call queues its commands and the first caller of an
event-loop turn starts a flush that sends everything queued by then as one non-transactional pipeline.
Each command keeps its own result or error (``raise_on_error=False``). The client's Retry
(`workers.store.client.redis_client`) replays a flush whose connection failed (a cluster client: the whole
flush, when one master's part failed); past it, the failure fails every caller of that flush. Lua scripts stay
atomic one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from workers.store.client import RedisClient

Queue = Callable[[Pipeline | ClusterPipeline], object]  # adds exactly one command to the pipeline

DEFAULT_MAX_BATCH = 512


class AutoPipeline:
    def __init__(self, redis: RedisClient, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self.redis = redis
        self.max_batch = max_batch
        self._pending: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.flushes = 0
        self.commands = 0

    async def call(self, queue: Queue) -> Any:
        """Queue one command and wait for its own result (or error)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((queue, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the other tasks of this loop turn queue theirs
        while self._pending:
            taken, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            pipe = self.redis.pipeline(transaction=False)
            batch = []
            for queue, fut in taken:
                try:
                    queue(pipe)
                except Exception as exc:  # refused by the client before sending (a bug): that caller alone
                    fut.set_exception(exc)
                else:
                    batch.append((queue, fut))
            if not batch:
                continue
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # connection level: every caller of this flush sees it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.flushes += 1
            self.commands += len(batch)
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
