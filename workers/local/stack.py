"""The embedded default: broker, Redis, replay LLM server, one router and the inference workers.

With an LLM URL set (``THINKROUTE_LLM_BASE_URL`` or the route/model overrides) no replay server starts: the
workers are handed the user's LLM settings and key (`workers.local.llm`); ``llm`` says which backend it is.

Started by ``thinkroute run`` when no broker is configured, and by ``thinkroute stack up``; every part
is a child process on a free loopback port, stopped (workers first, gracefully) when the job is done.

For one user: the working directory is 0700 and what is written in it 0600; Redis has a generated password
and a user that may run only ThinkRoute's commands (`workers.local.redis_conf`), handed to the workers in
their environment, never on a command line. The broker is PLAINTEXT on loopback: the Tansu build cannot serve
TLS and its SASL knows no users and admits a client that ignores the refusal (README, "Kafka security").
Every child gets SIGKILL if this process dies.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from workers.kafka.clients import ensure_topics, kafka_config
from workers.local import llm
from workers.local.redis_conf import REDIS_USER
from workers.local.services import (
    Service,
    free_port,
    spawn,
    start_broker,
    start_redis,
    start_replay,
    wait_port_async,
)
from workers.local.workdir import clean_stale, disown, make_workdir
from workers.runtime.apikeys import LOCAL_OWNER, key_hash, new_api_key, write_keys_file
from workers.settings import KafkaSecurity, Settings

log = logging.getLogger(__name__)

# the broker and Redis of the stack die with this process: nothing is left worth draining
DEATH_SIGNAL = signal.SIGKILL


class EmbeddedStack:
    def __init__(
        self,
        settings: Settings,
        *,
        inference_workers: int = 1,
        routers: int = 1,
        replay_time_scale: float = 1.0,
        workdir: Path | None = None,
        api: bool = False,
    ) -> None:
        self.settings = settings
        self.inference_workers = inference_workers
        self.routers = routers
        self.replay_time_scale = replay_time_scale
        self.api = api
        if workdir is None:
            clean_stale()  # the directories of earlier runs that were SIGKILLed
            workdir = make_workdir()
        self.workdir = workdir
        self.services: list[Service] = []
        self.workers: list[Service] = []
        self.env: dict[str, str] = {}
        self.metrics_urls: dict[str, str] = {}  # worker name -> its /metrics
        self.llm: dict[str, Any] = {}  # `llm.describe`, once started
        self.stopped = False
        atexit.register(self._at_exit)

    @property
    def children(self) -> list[Service]:
        return [*self.workers, *self.services]

    async def start(self) -> dict[str, str]:
        """Start everything; returns the environment that points clients at it (the Redis URL in it carries
        the generated password)."""
        # started from this thread, not an executor thread: a child gets its death signal when the thread
        # that spawned it ends (PR_SET_PDEATHSIG), and these must live as long as the stack. The three start
        # at once, then each is waited for without blocking the loop (a signal is handled meanwhile).
        external = self.settings.external_llm
        if external:
            llm.check_routes(self.settings)  # before anything starts
        password = secrets.token_urlsafe(24)
        broker = start_broker(self.workdir, cache_dir=self.settings.cache_dir, wait=False, death_signal=DEATH_SIGNAL)
        self.services.append(broker)
        redis = start_redis(self.workdir, user=REDIS_USER, password=password, wait=False, death_signal=DEATH_SIGNAL)
        self.services.append(redis)
        waits = [(broker, 15.0), (redis, 15.0)]
        replay_url = None
        if not external:
            dt = self.replay_time_scale
            replay = start_replay(self.workdir, time_scale=dt, wait=False, death_signal=DEATH_SIGNAL)
            self.services.append(replay)
            waits.append((replay, 60.0))
            replay_url = f"http://{replay.address}/v1"
        for svc, timeout in waits:
            await wait_port_async(svc, timeout)
        self.env = {
            "THINKROUTE_KAFKA_BOOTSTRAP": broker.address,
            "THINKROUTE_REDIS_URL": f"redis://{REDIS_USER}:{password}@{redis.address}/0",
            **llm.client_env(self.settings, replay_url),
            "THINKROUTE_SESSION_TIMEOUT_MS": "6000",
            "THINKROUTE_CACHE_DIR": str(self.settings.cache_dir),
        }
        self.llm = llm.describe(self.settings, replay_url)
        t = self.settings.topics
        embedded = {"kafka_bootstrap": broker.address, "kafka": KafkaSecurity()}  # Tansu here: plaintext
        kc = kafka_config(self.settings.model_copy(update=embedded))
        await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], self.settings.partitions)
        for i in range(self.routers):
            self.workers.append(self._worker("router", i))
        for i in range(self.inference_workers):
            self.workers.append(self._worker("inference", i))
        if self.api:
            await self._start_api()
        log.info(
            "embedded stack up in %s: broker %s, redis %s, LLM %s at %s",
            self.workdir,
            broker.address,
            redis.address,
            self.llm["backend"],
            self.llm["base_url"] or self.llm["routes"],
        )
        return self.env

    def _worker(self, kind: str, index: int) -> Service:
        argv = [sys.executable, "-m", "workers", "worker", kind]
        port = free_port()  # each worker its own /metrics port, so several run side by side
        self.metrics_urls[f"{kind}-{index}"] = f"http://127.0.0.1:{port}/metrics"
        env = {**self.env, "THINKROUTE_METRICS_HOST": "127.0.0.1"}
        env[f"THINKROUTE_{kind.upper()}__METRICS_PORT"] = str(port)
        if kind == "inference":
            env |= llm.secret_env(self.settings)
        return spawn(f"{kind}-{index}", argv, self.workdir, port, env=env, death_signal=DEATH_SIGNAL)

    async def _start_api(self) -> None:
        """``thinkroute serve`` as a child, with one generated API key (owner ``local``, its hash in a 0600 keys
        file of the working directory) and its files in the working directory; adds the OpenAI SDK's own
        variables (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``) to the environment."""
        key = new_api_key()
        keys_file = self.workdir / "api-keys"
        write_keys_file(keys_file, {LOCAL_OWNER: key_hash(key)})
        port, metrics_port = free_port(), free_port()
        env = {
            **self.env,
            "THINKROUTE_METRICS_HOST": "127.0.0.1",
            "THINKROUTE_API__HOST": "127.0.0.1",
            "THINKROUTE_API__PORT": str(port),
            "THINKROUTE_API__METRICS_PORT": str(metrics_port),
            "THINKROUTE_API__KEYS_FILE": str(keys_file),
            "THINKROUTE_API__FILES_DIR": str(self.workdir / "files"),
        }
        argv = [sys.executable, "-m", "workers", "serve"]
        svc = spawn("api", argv, self.workdir, port, env=env, death_signal=DEATH_SIGNAL)
        self.services.append(svc)  # stopped first (the services stop in reverse order)
        self.metrics_urls["api"] = f"http://127.0.0.1:{metrics_port}/metrics"
        await wait_port_async(svc, 60.0)
        self.env |= {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": key}

    def check(self) -> None:
        """Raise ServiceError if a worker or server died: a job would otherwise wait forever."""
        for svc in self.services + self.workers:
            if not svc.alive():
                raise svc.failed(f"embedded {svc.name} exited with code {svc.proc.returncode}")

    def running_workers(self) -> int:
        return sum(w.alive() for w in self.workers)

    async def stop_workers(self, grace_s: float) -> None:
        """SIGTERM to the workers (they stop fetching, finish what is in flight, store, commit), SIGKILL to
        those still running after ``grace_s``: returns within about ``grace_s``, sooner once they are gone
        (`kill_workers` from a signal handler ends the wait)."""
        for svc in self.workers:
            svc.terminate()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not self.running_workers():
                break
            await asyncio.sleep(0.05)  # polls child processes: no event to wait on
        self.kill_workers()
        for svc in self.workers:
            svc.stop(timeout=5)

    def kill_workers(self) -> None:
        """SIGKILL to every worker, now (safe in a signal handler)."""
        for svc in self.workers:
            svc.kill()

    def kill(self) -> None:
        """SIGKILL to every child, now (safe in a signal handler); `stop` then reaps them."""
        for svc in self.children:
            svc.kill()

    def stop(self, keep_logs: bool = False, timeout: float = 10.0) -> None:
        """Workers first (SIGTERM: drain and commit), then the servers, each SIGKILLed after ``timeout``;
        then the working directory is removed, unless ``keep_logs`` (it stays, and no later start removes
        it; the password file goes)."""
        for svc in self.workers:
            svc.terminate()
        for svc in self.workers:
            svc.stop(timeout=2 * timeout)
        for svc in reversed(self.services):
            svc.stop(timeout=timeout)
        self.stopped = True
        atexit.unregister(self._at_exit)
        if keep_logs:
            (self.workdir / "redis.conf").unlink(missing_ok=True)
            disown(self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _at_exit(self) -> None:
        """The interpreter exits with the stack still up (an error nobody caught): nothing outlives it."""
        if not self.stopped:
            self.kill()
            self.stop(timeout=2.0)
