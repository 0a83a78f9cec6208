"""One exception hierarchy: transient errors are worth retrying, permanent ones are not.

Every error ThinkRoute raises on purpose, and every error the CLI can meet, is one of these (foreign
connection errors, aiokafka's and redis-py's, are re-raised as ``Unreachable`` at the CLI's edge). The
CLI prints one line, ``error: <message>``, and exits with the class's ``exit_code``::

    ThinkRouteError          1  the base: a runtime error
    ├── TransientError       1  worth retrying: timeouts, resets, 429, 5xx
    │   ├── Unreachable      3  the broker or Redis refused or dropped the connection; carries the address
    │   ├── ServiceError     3  an embedded service (a child process) died or did not start
    │   ├── JobTimeout       1  a job was not done within its timeout
    │   └── SubmitFailed     1  (workers.submit.jobs) publishing failed midway: the job is failed; names it
    │       └── SubmitUnreachable  3  ... because the broker or Redis went away
    └── PermanentError       1  retrying cannot help: a 4xx from the LLM, an unknown model
        ├── LLMFailed        1  (workers.inference.client) an LLM request failed for good
        ├── RejectedRequest  1  (workers.store.integrity) a prompt its job did not register: dead-lettered
        ├── InvalidInput     2  input the command cannot use: a flag value, a file, a name
        │   ├── BadInput     2  a batch-file line that cannot be submitted; carries the line number
        │   └── NotFound     2  a job (or another named thing) that does not exist
        └── ConfigError      2  settings or a policy file that cannot work

Exit codes of ``thinkroute`` (click's convention for 2):

* 0: done; ``thinkroute run``: every request completed;
* 1: a runtime error, or (``thinkroute run``) some requests failed;
* 2: a usage error (click's own) or bad input: bad batch-file lines, bad flag values, bad settings;
* 3: infrastructure unreachable: the broker, Redis, an embedded service that died or did not start;
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class ThinkRouteError(Exception):
    """Base of every error ThinkRoute raises on purpose."""

    exit_code: ClassVar[int] = EXIT_FAILED


class TransientError(ThinkRouteError):
    """Worth retrying: timeouts, connection resets, 429, 5xx, a broker or Redis briefly away."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unreachable(TransientError):
    """The broker or Redis cannot be reached (refused, dropped, timed out) at ``address``."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, what: str, address: str, detail: str = "") -> None:
        super().__init__(f"{what} unreachable at {address}" + (f": {detail}" if detail else ""))
        self.what = what
        self.address = address


class ServiceError(TransientError):
    """An embedded service (broker, Redis, replay server, worker) died or did not come up; a new run
    starts a fresh stack. ``log_path`` names its log, when it has one."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, message: str, *, name: str = "", log_path: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.log_path = log_path


class JobTimeout(TransientError):
    """A job was not done within its timeout (the job itself goes on where the workers keep running)."""

    def __init__(self, job_id: str, done: int, total: int, timeout_s: float) -> None:
        super().__init__(f"job {job_id}: {done}/{total} done after {timeout_s:g}s (timeout)")
        self.job_id = job_id
        self.done = done
        self.total = total


class PermanentError(ThinkRouteError):
    """Retrying cannot help: bad input, a 4xx from the LLM, an unknown model."""


class InvalidInput(PermanentError):
    """Input the command cannot use: a flag value, an input file, a name."""

    exit_code = EXIT_USAGE


class BadInput(InvalidInput):
    """A batch file line that cannot be submitted; carries the line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class NotFound(InvalidInput):
    """A job (or another thing named on the command line) that does not exist."""


class ConfigError(PermanentError):
    """Settings or a policy file that cannot work."""

    exit_code = EXIT_USAGE
