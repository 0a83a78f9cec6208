"""What every command shares: the two consoles, settings and logging, JSON output, errors and exit codes.

stdout carries a command's result (a table, or with ``--json`` one JSON value); stderr carries progress,
logs and the one ``error: ...`` line a failure ends with. The exit codes are those of `workers.errors`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

import typer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from pydantic import ValidationError
from pydantic_settings import SettingsError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console
from rich.text import Text

from workers.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, ConfigError, ThinkRouteError, Unreachable
from workers.settings import Settings

err = Console(stderr=True, soft_wrap=True)
# piped or captured: tables 200 columns wide rather than 80, so no column is cut
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON value instead of text")]

P = ParamSpec("P")
R = TypeVar("R")

KAFKA_ERRORS = (KafkaConnectionError, KafkaTimeoutError)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)


def settings(level: str | None = None, *, client: bool = False) -> Settings:
    """Read the settings (once per command) and send logs to stderr at ``level`` (default: the settings').

    ``client``: a command that talks to the broker as a client (run, submit, lag): aiokafka's own log lines
    about a connection that failed are left out, the command's one ``error:`` line says it.
    """
    s = read_settings()
    logging.basicConfig(
        level=level or s.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # one line per HTTP request is noise at INFO (and would show URLs of every LLM call)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if client:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return s


def read_settings() -> Settings:
    """The settings from the environment; a value that does not validate is a ConfigError naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors()[:3]:
            name = "THINKROUTE_" + "__".join(str(part) for part in e["loc"]).upper()
            problems.append(f"{name}: {e['msg']}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None
    except SettingsError as exc:  # a value that is not even parsed, e.g. bad JSON for a dict setting
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"THINKROUTE_{field.group(1).upper()}" if field else "?"
        raise ConfigError(f"invalid setting {name}: its value cannot be parsed (JSON expected)") from None


def print_json(value: Any) -> None:
    """A command's result as one JSON value on one line of stdout."""
    sys.stdout.write(json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def one_line(message: str) -> str:
    """A message on one line: its lines joined by '; ' (a log tail or a pydantic report has several)."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip()) or message


def say_error(message: str) -> None:
    err.print(Text.assemble(("error:", "bold red"), " ", one_line(message)), highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """End the command: one ``error:`` line on stderr and exit ``code`` (default 2, bad input)."""
    say_error(message)
    raise typer.Exit(code)


def redis_address(s: Settings) -> str:
    """host:port/db of the configured Redis, never its password."""
    if s.redis_url is None:
        return "(THINKROUTE_REDIS_URL not set)"
    url = urlsplit(s.redis_url.get_secret_value())
    if url.scheme == "unix":
        return f"unix:{url.path}"
    return f"{url.hostname}:{url.port or 6379}{url.path or '/0'}"


def translate(exc: BaseException, s: Settings | None = None) -> ThinkRouteError | None:
    """A foreign error the CLI meets as one of ours (None if it is not one the CLI knows)."""
    if isinstance(exc, ThinkRouteError):
        return exc
    if isinstance(exc, KAFKA_ERRORS):
        address = (s.kafka_bootstrap if s is not None else None) or "the broker"
        return Unreachable("broker", address, str(exc) or type(exc).__name__)
    if isinstance(exc, REDIS_ERRORS):
        return Unreachable("Redis", redis_address(s) if s is not None else "?", str(exc) or type(exc).__name__)
    return None


@contextmanager
def edge(s: Settings) -> Iterator[None]:
    """Around what a command does with the broker and Redis: their connection errors become Unreachable,
    with the configured address."""
    try:
        yield
    except (*KAFKA_ERRORS, *REDIS_ERRORS) as exc:
        ours = translate(exc, s)
        assert ours is not None
        raise ours from exc


KNOWN = (ThinkRouteError, *KAFKA_ERRORS, *REDIS_ERRORS, KeyboardInterrupt)


def exit_code(exc: BaseException) -> int:
    """The documented exit code of one of the ``KNOWN`` errors (anything else is a bug: 1, with its traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    ours = translate(exc)
    return EXIT_FAILED if ours is None else ours.exit_code


def report(exc: BaseException) -> int:
    """Print the one ``error:`` line for one of the ``KNOWN`` errors; returns its exit code."""
    ours = translate(exc)
    say_error("interrupted" if isinstance(exc, KeyboardInterrupt) or ours is None else str(ours))
    return exit_code(exc)


def guarded(command: Callable[P, R]) -> Callable[P, R]:
    """Every command is registered through this: an error of ours (`workers.errors`), a broker or Redis
    connection error, and Ctrl-C end it with one ``error:`` line on stderr and the documented exit code
    instead of a traceback. Anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except KNOWN as exc:
            raise typer.Exit(report(exc)) from None

    run.guarded = True  # type: ignore[attr-defined]
    return run
