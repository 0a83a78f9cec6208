"""The validation pass of an API batch's input file, streamed: every bad line as the error OpenAI reports for it
(``schemas.records.LineError``), the custom ids of the good ones in input order, and nothing else in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from schemas.chat import Limits
from schemas.records import LineError
from workers.errors import BadInput
from workers.submit.batchfile import InputRequest, check_request_line, request_lines
from workers.submit.encode import encode_problem

MAX_ERRORS: Final = 1000  # errors kept; the count of the others is in the last one's message
DUPLICATE: Final = (
    "The custom_id {cid!r} of this request is a duplicate of another request's. The custom_id parameter must be "
    "unique for each individual request in a batch."
)


class Validation:
    """Reads the file's lines ``step`` by ``step`` (call it from one thread at a time), keeping the errors
    (``errors``, at most ``MAX_ERRORS``) and the good requests' custom ids (``custom_ids``, input order).

    Codes: ``invalid_json_line`` (not UTF-8, not JSON, not an object, not a JSON lines file, a corrupt gzip
    stream), ``missing_required_parameter``, ``mismatched_endpoint``, ``invalid_request`` (a field is wrong,
    or the request cannot be published: too large for the broker, a string that is not UTF-8),
    ``duplicate_custom_id``, ``too_many_requests`` (more than ``max_lines``; reading stops there),
    ``empty_file``."""

    def __init__(self, path: Path, limits: Limits, job_id: str, max_bytes: int, endpoint: str, max_lines: int) -> None:
        self.limits = limits
        self.job_id = job_id
        self.max_bytes = max_bytes
        self.endpoint = endpoint
        self.max_lines = max_lines
        self.custom_ids: list[str] = []
        self.errors: list[LineError] = []
        self.unlisted = 0  # errors past MAX_ERRORS
        self.requests = 0  # request lines read (good and bad)
        self._seen: set[str] = set()
        self._lines = request_lines(path)
        self._done = False

    def step(self, count: int) -> bool:
        """Check up to ``count`` more lines; True once the whole file is checked."""
        for _ in range(count):
            item = next(self._lines, None)
            if item is None:
                return self._finish()
            number, raw = item
            self.requests += 1
            if self.requests > self.max_lines:
                message = f"The input file has more than {self.max_lines} requests, the most a batch may have."
                self._add(LineError(code="too_many_requests", message=message, line=number))
                return self._finish()
            if isinstance(raw, BadInput):  # not a JSON lines file at all, or a corrupt gzip stream
                message = str(raw).removeprefix(f"line {raw.line}: ")
                self._add(LineError(code="invalid_json_line", message=f"This line is {message}.", line=number))
                continue
            self._check(raw, number)
        return False

    def _check(self, raw: bytes, number: int) -> None:
        req = check_request_line(raw, number, self.limits, self.endpoint)
        if not isinstance(req, InputRequest):
            self._add(req)
        elif req.custom_id in self._seen:
            message = DUPLICATE.format(cid=req.custom_id[:100])
            self._add(LineError(code="duplicate_custom_id", message=message, line=number, param="custom_id"))
        elif problem := encode_problem(self.job_id, req, self.max_bytes):
            self._add(
                LineError(
                    code="invalid_request",
                    message=f"This request cannot be published: {problem}.",
                    line=number,
                    param="body",
                )
            )
        else:
            self._seen.add(req.custom_id)
            self.custom_ids.append(req.custom_id)

    def _add(self, error: LineError) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(error)
        else:
            self.unlisted += 1

    def _finish(self) -> bool:
        if not self._done:
            self._done = True
            self.close()
            if self.requests == 0:
                self._add(LineError(code="empty_file", message="The input file has no requests."))
            if self.unlisted:
                last = self.errors[-1]
                more = f"{last.message} (and {self.unlisted} more errors, not listed)"
                self.errors[-1] = last.model_copy(update={"message": more})
        return True

    def close(self) -> None:
        """Close the file (done by the last step; call it when stopping before)."""
        try:
            self._lines.close()
        except ValueError:  # a step still runs in its thread (a second cancel): it closes the file when collected
            pass
        self._seen = set()

    def reason(self) -> str:
        """The batch's ``failed_reason``: how many errors, and the first."""
        total = len(self.errors) + self.unlisted
        first = self.errors[0]
        where = f"line {first.line}: " if first.line is not None else ""
        return f"the input file has {total} error(s); the first: {where}{first.message}"[:500]
