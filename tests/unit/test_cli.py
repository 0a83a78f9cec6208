"""The CLI as a whole: every command's help lists its flags, --version, --json is one JSON value, and each
error of `workers.errors` (and each foreign connection error) ends a command with one line and its code."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
import typer
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from typer.testing import CliRunner

from workers.cli import common
from workers.cli.app import app
from workers.errors import (
    BadInput,
    ConfigError,
    InvalidInput,
    JobTimeout,
    NotFound,
    PermanentError,
    ServiceError,
    ThinkRouteError,
    TransientError,
    Unreachable,
)
from workers.inference.client import LLMFailed
from workers.replay import server
from workers.replay.faults import FaultPlan
from workers.settings import Settings


@pytest.fixture(autouse=True)
def no_thinkroute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("THINKROUTE_"):
            monkeypatch.delenv(var)


def commands(cmd: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command of the app, with the words that call it."""
    cmd = cmd or typer.main.get_command(app)
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from commands(sub, (*path, name))
    else:
        yield path, cmd


def options(cmd: Any) -> list[str]:
    return [o for p in cmd.params if getattr(p, "param_type_name", "") == "option" for o in p.opts]


ALL = sorted(path for path, _ in commands())


def test_the_app_has_every_command() -> None:
    assert ALL == sorted(
        [
            ("run",),
            ("compare",),
            ("submit",),
            ("status",),
            ("results",),
            ("cancel",),
            ("replay-server",),
            ("lag",),
            ("train",),
            ("classify",),
            ("calibrate",),
            ("eval",),
            ("eval-cascade",),
            ("eval-tier",),
            ("fit",),
            ("eval-learning",),
            ("records", "convert"),
            ("records", "export"),
            ("worker", "router"),
            ("worker", "inference"),
            ("stack", "up"),
            ("serve",),
            ("api-key", "new"),
        ]
    )


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_every_command_help_lists_its_flags(path: tuple[str, ...]) -> None:
    cmd = dict(commands())[path]
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for flag in options(cmd):
        assert flag in result.output, f"`thinkroute {' '.join(path)} --help` does not show {flag}"
    assert getattr(cmd.callback, "guarded", False), "registered without workers.cli.common.guarded"


RESULT_COMMANDS = {"run", "compare", "submit", "status", "results", "lag", "train", "classify", "calibrate", "eval"}


def test_every_command_that_prints_a_result_has_json() -> None:
    found = {path[-1]: "--json" in options(cmd) for path, cmd in commands()}
    assert all(found[name] for name in RESULT_COMMANDS | {"eval-cascade", "eval-tier", "up"}), found


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"thinkroute {version('thinkroute')}\n"


def test_help_documents_the_exit_codes() -> None:
    out = CliRunner().invoke(app, ["--help"], terminal_width=200).output
    for code, what in [("0", "done"), ("1", "runtime error"), ("2", "usage error"), ("3", "unreachable")]:
        assert f"{code}    " in out and what in out
    assert "130  interrupted" in out


def test_eval_cascade_json_is_one_value() -> None:
    result = CliRunner().invoke(app, ["eval-cascade", "--json", "--thresholds", "0.5"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # one value: a list, not one object per line
    assert isinstance(rows, list) and rows
    assert {"dataset", "strategy", "accuracy", "cost"} <= set(rows[0])


# --- errors -> exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ThinkRouteError("x"), 1),
        (TransientError("x"), 1),
        (PermanentError("x"), 1),
        (LLMFailed("x", status_code=404, attempts=4, latency_s=0.1), 1),
        (JobTimeout("job-1", 3, 20, 1.0), 1),
        (Unreachable("Redis", "h:1/0"), 3),
        (ServiceError("inference-0 exited"), 3),
        (InvalidInput("x"), 2),
        (BadInput(3, "x"), 2),
        (NotFound("x"), 2),
        (ConfigError("x"), 2),
        (KafkaConnectionError("no"), 3),
        (RedisConnectionError("no"), 3),
        (RedisTimeoutError("no"), 3),
        (KeyboardInterrupt(), 130),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert common.exit_code(exc) == code


def test_the_tree_marks_transient_and_permanent() -> None:
    for cls in (Unreachable, ServiceError, JobTimeout):
        assert issubclass(cls, TransientError) and not issubclass(cls, PermanentError)
    for cls in (InvalidInput, BadInput, NotFound, ConfigError, LLMFailed):
        assert issubclass(cls, PermanentError) and not issubclass(cls, TransientError)
    assert str(JobTimeout("job-1", 3, 20, 1.0)) == "job job-1: 3/20 done after 1s (timeout)"


def test_foreign_connection_errors_name_the_address_not_the_password() -> None:
    s = Settings(kafka_bootstrap="kafka:9092", redis_url=SecretStr("redis://:hunter2@cache:6380/3"))
    kafka = common.translate(KafkaConnectionError("Unable to bootstrap"), s)
    assert isinstance(kafka, Unreachable)
    assert str(kafka) == "broker unreachable at kafka:9092: KafkaConnectionError: Unable to bootstrap"
    redis = common.translate(RedisConnectionError("Connection refused."), s)
    assert isinstance(redis, Unreachable) and redis.address == "cache:6380/3"
    assert "hunter2" not in str(redis)
    assert common.translate(ValueError("x"), s) is None


def _app_raising(exc: BaseException) -> typer.Typer:
    probe = typer.Typer()

    def boom() -> None:
        raise exc

    probe.command("boom")(common.guarded(boom))
    probe.command("other")(common.guarded(lambda: None))
    return probe


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (ServiceError("embedded inference-0 exited with code 137 (log: /tmp/x.log)"), 3, "inference-0 exited"),
        (JobTimeout("job-1", 0, 20, 1.0), 1, "job job-1: 0/20 done after 1s (timeout)"),
        (ConfigError("invalid policy file p.yaml: 1 validation error\nthreshold\n  too big"), 2, "; threshold; too"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (KafkaConnectionError("Unable to bootstrap from [('h', 1)]"), 3, "broker unreachable"),
    ],
)
def test_a_guarded_command_ends_with_one_line_and_its_code(exc: BaseException, code: int, line: str) -> None:
    result = CliRunner().invoke(_app_raising(exc), ["boom"])
    assert result.exit_code == code
    assert result.stdout == ""
    [only] = result.stderr.splitlines()
    assert only.startswith("error: ") and line in only


def test_a_bug_keeps_its_traceback() -> None:
    result = CliRunner().invoke(_app_raising(RuntimeError("a bug")), ["boom"])
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "pyproject.toml"], "THINKROUTE_KAFKA_BOOTSTRAP is not set"),
        (["lag"], "THINKROUTE_KAFKA_BOOTSTRAP is not set"),
        (["status", "job-x"], "THINKROUTE_REDIS_URL is not set"),
        (["eval"], "give either --replay FILE or --models SMALL,LARGE"),
        (["replay-server", "--fault-5xx", "0.6", "--fault-429", "0.6"], "fault shares must be >= 0"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {message}")


def test_usage_errors_keep_clicks_code() -> None:
    assert CliRunner().invoke(app, ["run", "/no/such/file.jsonl"]).exit_code == 2
    assert CliRunner().invoke(app, ["status"]).exit_code == 2
    assert CliRunner().invoke(app, ["no-such-command"]).exit_code == 2


# --- replay-server: the typer command and the server's own argparse agree ---------------------------------


def _argparse_flags() -> dict[str, Any]:
    return {
        a.option_strings[0]: a.default
        for a in server.parser()._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
    }


def test_replay_server_flags_match_the_server_parser() -> None:
    [cmd] = [c for path, c in commands() if path == ("replay-server",)]
    typer_flags = {p.opts[0]: p.default for p in cmd.params if getattr(p, "param_type_name", "") == "option"}
    assert typer_flags == _argparse_flags()
    log_level = next(a for a in server.parser()._actions if a.dest == "log_level")
    assert tuple(log_level.choices or ()) == server.LOG_LEVELS


def test_replay_server_runs_the_server_with_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr("workers.cli.replay.serve", lambda *a, **kw: calls.append((a, kw)))
    argv = ["replay-server", "--host", "0.0.0.0", "--port", "8123", "--time-scale", "0", "--log-level", "info"]
    argv += ["--fault-5xx", "0.1", "--fault-429", "0.2", "--fault-hang-s", "3", "--fault-fail-marker", "FAIL"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    [(args, kw)] = calls
    assert args == ("0.0.0.0", 8123)
    assert kw["time_scale"] == 0.0 and kw["log_level"] == "info" and kw["qwen3_records"] is None
    assert kw["faults"] == FaultPlan(share_5xx=0.1, share_429=0.2, hang_s=3.0, fail_marker="FAIL")

    # python -m workers.replay.server (the embedded stack's child) builds the same call from the same flags
    monkeypatch.setattr(server, "serve", lambda *a, **kw: calls.append((a, kw)))
    server.main(argv[1:])
    assert calls[1] == calls[0]


def test_loadgen_no_longer_serves_replay() -> None:
    from loadgen.__main__ import COMMANDS, main

    assert set(COMMANDS) == {"samples", "chaos", "bench", "scale"}
    with pytest.raises(SystemExit) as exc:
        main(["replay-server"])
    assert exc.value.code == 2
