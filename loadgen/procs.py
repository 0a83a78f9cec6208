"""Workers as real processes for crash tests and chaos runs: started from Settings, killed, restarted."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from workers.local.services import Service, spawn
from workers.settings import Settings


def settings_env(s: Settings, **extra: str) -> dict[str, str]:
    """The THINKROUTE_* environment that makes a worker process read the same settings."""
    assert s.kafka_bootstrap and s.redis_url and s.llm_base_url
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKROUTE_")}
    env.update(
        {
            "THINKROUTE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "THINKROUTE_REDIS_URL": s.redis_url.get_secret_value(),
            "THINKROUTE_LLM_BASE_URL": s.llm_base_url,
            "THINKROUTE_TOPICS__PROMPTS": s.topics.prompts,
            "THINKROUTE_TOPICS__REASONING": s.topics.reasoning,
            "THINKROUTE_TOPICS__DIRECT": s.topics.direct,
            "THINKROUTE_TOPICS__DEAD": s.topics.dead,
            "THINKROUTE_ROUTER__GROUP": s.router.group,
            "THINKROUTE_ROUTER__BATCH_MAX": str(s.router.batch_max),
            "THINKROUTE_ROUTER__BATCH_WAIT_MS": str(s.router.batch_wait_ms),
            "THINKROUTE_INFERENCE__GROUP": s.inference.group,
            "THINKROUTE_INFERENCE__CONCURRENCY": str(s.inference.concurrency),
            "THINKROUTE_SESSION_TIMEOUT_MS": str(s.session_timeout_ms),
            "THINKROUTE_CACHE_DIR": str(s.cache_dir),
            "THINKROUTE_LOG_LEVEL": "INFO",
            # several workers share one machine here: no fixed metrics ports unless asked for
            "THINKROUTE_ROUTER__METRICS_PORT": "0",
            "THINKROUTE_INFERENCE__METRICS_PORT": "0",
        }
    )
    if s.redis_cluster:
        env["THINKROUTE_REDIS_CLUSTER"] = "true"
    if s.router.artifact_dir:
        env["THINKROUTE_ROUTER__ARTIFACT_DIR"] = str(s.router.artifact_dir)
    if os.environ.get("THINKROUTE_TEST_ARTIFACT"):
        env["THINKROUTE_ROUTER__ARTIFACT_DIR"] = os.environ["THINKROUTE_TEST_ARTIFACT"]
    env.update(extra)
    return env


class Procs:
    """Named worker processes; ``restart_dead`` plays the part of compose's restart policy."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.procs: dict[str, Service] = {}
        self.exits: list[tuple[str, int]] = []
        self.starts = 0

    def start(self, name: str, kind: str, **env: str) -> Service:
        self.starts += 1
        argv = [sys.executable, "-m", "workers", "worker", kind]
        svc = spawn(f"{name}-{self.starts}", argv, self.workdir, 0, env={**self.env, **env})
        svc.name = name
        self.procs[name] = svc
        return svc

    def kill(self, name: str) -> None:
        svc = self.procs[name]
        if svc.alive():
            svc.proc.send_signal(signal.SIGKILL)
            svc.proc.wait(10)
        self.exits.append((name, svc.proc.returncode))

    def restart_dead(self, kind_of: dict[str, str], **env: str) -> list[str]:
        restarted = []
        for name, svc in list(self.procs.items()):
            if not svc.alive():
                self.exits.append((name, svc.proc.returncode))
                self.start(name, kind_of[name], **env)
                restarted.append(name)
        return restarted

    def stop_all(self) -> dict[str, int | None]:
        for svc in self.procs.values():
            svc.terminate()
        return {name: svc.stop(timeout=20) for name, svc in self.procs.items()}

    def logs(self, tail: int | None = None) -> str:
        """Every worker log (or the last ``tail`` characters of each), in name order."""
        texts = (p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))
        return "\n".join(t[-tail:] if tail else t for t in texts)
