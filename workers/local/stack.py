"""The embedded default: broker, Redis, replay LLM server, one router and the inference workers.

Started by ``thinkroute run`` when no broker is configured, and by ``thinkroute stack up``; every part
is a child process on a free loopback port, stopped (workers first, gracefully) when the job is done.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

from workers.kafka.clients import ensure_topics, kafka_config
from workers.local.services import Service, ServiceError, free_port, spawn, start_broker, start_redis, start_replay
from workers.settings import KafkaSecurity, Settings

log = logging.getLogger(__name__)


class EmbeddedStack:
    def __init__(
        self,
        settings: Settings,
        *,
        inference_workers: int = 1,
        routers: int = 1,
        replay_time_scale: float = 1.0,
        workdir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.inference_workers = inference_workers
        self.routers = routers
        self.replay_time_scale = replay_time_scale
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="thinkroute-stack-"))
        self.services: list[Service] = []
        self.workers: list[Service] = []
        self.env: dict[str, str] = {}
        self.metrics_urls: dict[str, str] = {}  # worker name -> its /metrics

    async def start(self) -> dict[str, str]:
        """Start everything; returns the environment that points clients at it."""
        # started from this thread, not an executor thread: a child gets SIGTERM when the thread that
        # spawned it ends (PR_SET_PDEATHSIG), and these must live as long as the stack
        broker = start_broker(self.workdir)
        self.services.append(broker)
        redis = start_redis(self.workdir)
        self.services.append(redis)
        replay = start_replay(self.workdir, time_scale=self.replay_time_scale)
        self.services.append(replay)
        self.env = {
            "THINKROUTE_KAFKA_BOOTSTRAP": broker.address,
            "THINKROUTE_REDIS_URL": f"redis://{redis.address}/0",
            "THINKROUTE_LLM_BASE_URL": f"http://{replay.address}/v1",
            "THINKROUTE_SESSION_TIMEOUT_MS": "6000",
            "THINKROUTE_CACHE_DIR": str(self.settings.cache_dir),
        }
        t = self.settings.topics
        embedded = {"kafka_bootstrap": broker.address, "kafka": KafkaSecurity()}  # Tansu here: plaintext
        kc = kafka_config(self.settings.model_copy(update=embedded))
        await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], self.settings.partitions)
        for i in range(self.routers):
            self.workers.append(self._worker("router", i))
        for i in range(self.inference_workers):
            self.workers.append(self._worker("inference", i))
        log.info(
            "embedded stack up in %s: broker %s, redis %s, replay %s",
            self.workdir,
            broker.address,
            redis.address,
            replay.address,
        )
        return self.env

    def _worker(self, kind: str, index: int) -> Service:
        argv = [sys.executable, "-m", "workers", "worker", kind]
        port = free_port()  # each worker its own /metrics port, so several run side by side
        self.metrics_urls[f"{kind}-{index}"] = f"http://127.0.0.1:{port}/metrics"
        env = {**self.env, "THINKROUTE_METRICS_HOST": "127.0.0.1"}
        env[f"THINKROUTE_{kind.upper()}__METRICS_PORT"] = str(port)
        return spawn(f"{kind}-{index}", argv, self.workdir, port, env=env)

    def check(self) -> None:
        """Raise if a worker or server died: a job would otherwise wait forever."""
        for svc in self.services + self.workers:
            if not svc.alive():
                raise ServiceError(
                    f"{svc.name} exited with code {svc.proc.returncode}; last lines of {svc.log_path}:\n"
                    f"{svc.log_tail()}"
                )

    def stop(self, keep_logs: bool = False) -> None:
        for svc in self.workers:  # SIGTERM: drain and commit
            svc.terminate()
        for svc in self.workers:
            svc.stop(timeout=20)
        for svc in reversed(self.services):
            svc.stop(timeout=10)
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
