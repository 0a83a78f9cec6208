"""How `thinkroute` fails, as a user meets it: one `error:` line on stderr that names what failed and where
(address, path, variable), the documented exit code, and a bounded wait (README, Errors and exit codes)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.integration.test_cli_run import SAMPLE, embedded_env, one_error_line, thinkroute
from workers.cli.console import BROKER_CONNECT_TIMEOUT_S
from workers.local.services import free_port

pytestmark = pytest.mark.integration
REDIS_REPLY_TIMEOUT_S = 10.0  # workers.store.jobstore.redis_client's socket_timeout
Completed = subprocess.CompletedProcess[str]
MOUNT_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


@pytest.fixture
def silent() -> Iterator[str]:
    """host:port of a listener that accepts connections (the kernel does) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def read_only(path: Path) -> list[str]:
    """The argv prefix that runs a command with ``path`` read-only: as root, in a private mount namespace
    (root ignores file modes); else by its mode. Skips where neither is possible."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return []
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("root without a mount namespace: no read-only directory to test with")
    return [unshare, "-m", "--propagation", "private", "sh", "-c", MOUNT_RO, str(path)]


def thinkroute_in(prefix: list[str], *args: str, env: dict[str, str], timeout: float = 120) -> Completed:
    """`thinkroute ARGS` run under ``prefix`` (see `read_only`)."""
    argv = [*prefix, sys.executable, "-m", "workers", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def timed(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[Completed, float]:
    started = time.monotonic()
    proc = thinkroute(*args, env=env, timeout=timeout)
    return proc, time.monotonic() - started


def test_run_against_a_refused_broker_port() -> None:
    port = free_port()
    env = embedded_env(THINKROUTE_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", THINKROUTE_REDIS_URL="redis://127.0.0.1:1/0")
    proc, took = timed("run", str(SAMPLE), env=env, timeout=120)
    assert proc.returncode == 3 and proc.stdout == ""
    assert one_error_line(proc).startswith(f"error: broker unreachable at 127.0.0.1:{port}: ")
    assert took < BROKER_CONNECT_TIMEOUT_S + 10


def test_a_broker_that_never_answers_fails_within_the_connect_timeout(silent: str) -> None:
    env = embedded_env(THINKROUTE_KAFKA_BOOTSTRAP=silent, THINKROUTE_REDIS_URL="redis://127.0.0.1:1/0")
    proc, took = timed("submit", str(SAMPLE), env=env, timeout=120)
    assert proc.returncode == 3 and proc.stdout == ""
    assert one_error_line(proc) == f"error: broker unreachable at {silent}: no answer within 10s"
    assert BROKER_CONNECT_TIMEOUT_S <= took < BROKER_CONNECT_TIMEOUT_S + 10  # was 31 s


def test_a_redis_that_never_answers_fails_within_its_timeout(silent: str) -> None:
    proc, took = timed("status", "job-x", env=embedded_env(THINKROUTE_REDIS_URL=f"redis://:pw@{silent}/0"))
    assert proc.returncode == 3 and proc.stdout == ""
    line = one_error_line(proc)
    assert line.startswith(f"error: Redis unreachable at {silent}/0: ") and "pw" not in line
    assert took < REDIS_REPLY_TIMEOUT_S + 10


def test_a_required_setting_unset() -> None:
    proc = thinkroute("status", "job-x", env=embedded_env(THINKROUTE_KAFKA_BOOTSTRAP="127.0.0.1:1"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_error_line(proc) == "error: THINKROUTE_REDIS_URL is not set"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("THINKROUTE_PARTITIONS", "four", "Input should be a valid integer, unable to parse string as an integer"),
        ("THINKROUTE_ROUTER__BATCH_MAX", "0", "Input should be greater than or equal to 1"),
        ("THINKROUTE_LLM_MODEL_URLS", "{not json", "its value cannot be parsed (JSON expected)"),
    ],
)
def test_a_setting_that_does_not_validate(name: str, value: str, says: str) -> None:
    proc = thinkroute("run", str(SAMPLE), env=embedded_env(**{name: value}))
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_error_line(proc) == f"error: invalid setting {name}: {says}"


def test_an_output_path_that_cannot_be_written_is_refused_before_the_job(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for path, says in [
        (tmp_path / "no" / "r.jsonl", f"no directory {tmp_path / 'no'}"),
        (out_dir, "it is a directory"),
    ]:
        proc, took = timed("run", str(SAMPLE), "-o", str(path), env=embedded_env())
        assert proc.returncode == 2 and proc.stdout == ""
        assert one_error_line(proc) == f"error: cannot write results to {path}: {says}"
        assert took < 30  # no stack started, nothing submitted
    proc = thinkroute_in(read_only(out_dir), "run", str(SAMPLE), "-o", str(out_dir / "r.jsonl"), env=embedded_env())
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_error_line(proc)
    assert line.startswith(f"error: cannot write results to {out_dir / 'r.jsonl'}: ")
    assert line.endswith(("Read-only file system", "Permission denied"))


def test_an_empty_read_only_cache_dir(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    env = embedded_env(THINKROUTE_CACHE_DIR=str(cache))
    proc = thinkroute_in(read_only(cache), "run", str(SAMPLE), "--time-scale", "0", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_error_line(proc)
    assert line.startswith(f"error: cannot write the classifier cache at {cache}/classifier: ")
    assert line.endswith("(set THINKROUTE_CACHE_DIR to a writable directory)")


def test_a_read_only_home_with_a_writable_cache_dir_runs(artifact: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # the cache dir is the tests' own (writable, the artefact built)
    env = embedded_env(HOME=str(home))
    proc = thinkroute_in(read_only(home), "run", str(SAMPLE), "--time-scale", "0", "--json", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # the broker binary runs from the wheel, not a copy in HOME
    assert json.loads(proc.stdout)["completed"] == 20
    assert list(home.iterdir()) == []
