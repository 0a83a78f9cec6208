"""Read a batch file: OpenAI Batch request lines or ``{"id", "prompt"}`` lines, validated at the edge.

Every bad line is reported with its number and the reason; nothing is submitted from a file with bad
lines unless the caller asks to skip them. The file is read as users bring it: a UTF-8 byte-order mark
at its start is dropped, and a gzip-compressed file (known by its magic bytes, whatever its name) is
decompressed as it is read, its lines numbered as in the plain file. A line is held to the same
``Limits`` as a message on the prompts topic (``schemas.chat``): one model, one place.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from schemas.base import _where, describe
from schemas.batch import BatchRequestLine, ChatBody, Limits, SimplePromptLine
from schemas.records import LineError
from workers.errors import BadInput

GZIP_MAGIC: Final = b"\x1f\x8b"
UTF8_BOM: Final = b"\xef\xbb\xbf"
OTHER_FORMATS: Final = {  # first bytes of files that are not JSON lines, named instead of "not valid UTF-8"
    b"BZh": "a bzip2-compressed file: decompress it or use gzip",
    b"\x28\xb5\x2f\xfd": "a zstd-compressed file: decompress it or use gzip",
    b"\xfd7zXZ\x00": "an xz-compressed file: decompress it or use gzip",
    b"PK\x03\x04": "a zip archive: extract the JSONL file from it",
    b"\xff\xfe": "UTF-16 text: save it as UTF-8",
    b"\xfe\xff": "UTF-16 text: save it as UTF-8",
}


@dataclass(frozen=True)
class InputRequest:
    line: int
    custom_id: str
    body: ChatBody


def parse_line(raw: bytes, line: int, max_prompt_chars: int, max_tokens: int | None = None) -> InputRequest:
    """One line's request, or BadInput naming the line and the reason."""
    limits = Limits(max_prompt_chars, max_tokens)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(line, f"not valid UTF-8 (byte {exc.start})") from exc
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f": {exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ": nested too deep"
        raise BadInput(line, f"not valid JSON{where}") from exc
    if not isinstance(obj, dict):
        raise BadInput(line, f"expected a JSON object, got {type(obj).__name__}")
    try:  # validated from the JSON text, as the router validates a message: the same answer, word for word
        if "custom_id" in obj:
            req = BatchRequestLine.model_validate_json(text, context=limits.context())
            return InputRequest(line, req.custom_id, req.body)
        if "prompt" in obj or "id" in obj:
            simple = SimplePromptLine.model_validate_json(text)
            messages = [{"role": "user", "content": simple.prompt}]
            body = {"model": simple.model, "messages": messages, "max_tokens": simple.max_tokens}
            return InputRequest(line, simple.id, ChatBody.model_validate(body, context=limits.context()))
    except ValidationError as exc:
        raise BadInput(line, describe(exc)) from exc
    raise BadInput(
        line, "neither an OpenAI Batch request line (custom_id, method, url, body) nor a prompt line (id, prompt)"
    )


def check_request_line(
    raw: bytes, line: int, limits: Limits, endpoint: str = "/v1/chat/completions"
) -> InputRequest | LineError:
    """One line of a Batch API input file (OpenAI request lines only) as its request, or the error OpenAI would
    report for it: ``invalid_json_line`` (not UTF-8, not JSON, not an object), ``missing_required_parameter``,
    ``mismatched_endpoint`` (``url`` is not the batch's endpoint), ``invalid_request`` (any other field)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(
            code="invalid_json_line", message=f"This line is not valid UTF-8 (byte {exc.start}).", line=line
        )
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f": {exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ": nested too deep"
        return LineError(
            code="invalid_json_line", message=f"This line is not parseable as valid JSON{where}.", line=line
        )
    if not isinstance(obj, dict):
        what = type(obj).__name__
        return LineError(code="invalid_json_line", message=f"This line is a JSON {what}, not an object.", line=line)
    try:
        req = BatchRequestLine.model_validate_json(text, context=limits.context())
    except ValidationError as exc:
        return _line_error(exc, obj, line, endpoint)
    if obj.get("url") != endpoint:
        return _mismatched(obj, line, endpoint)
    return InputRequest(line, req.custom_id, req.body)


def _line_error(exc: ValidationError, obj: dict[str, object], line: int, endpoint: str) -> LineError:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":  # JSON that json.loads takes, pydantic's parser does not
        message = f"This line is not parseable as valid JSON: {errors[0]['msg']}."
        return LineError(code="invalid_json_line", message=message, line=line)
    missing = [".".join(_where(e["loc"])) for e in errors if e["type"] == "missing"]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        hint = " (a {id, prompt} line is for `thinkroute submit`)" if "prompt" in obj and "custom_id" not in obj else ""
        message = f"Missing required parameter{'s' if len(missing) > 1 else ''}: {names}{hint}."
        return LineError(code="missing_required_parameter", message=message, line=line, param=missing[0])
    if any(e["loc"] == ("url",) for e in errors):
        return _mismatched(obj, line, endpoint)
    param = ".".join(_where(errors[0]["loc"])) if errors else None
    return LineError(code="invalid_request", message=describe(exc), line=line, param=param or None)


def _mismatched(obj: dict[str, object], line: int, endpoint: str) -> LineError:
    url = str(obj.get("url"))[:200]
    message = f"The url {url!r} of this request does not match the batch's endpoint {endpoint!r}."
    return LineError(code="mismatched_endpoint", message=message, line=line, param="url")


def request_lines(path: Path) -> Generator[tuple[int, bytes | BadInput]]:
    """The file's non-blank lines as ``read_batch`` reads them (numbered from 1, a gzip file decompressed, the
    BOM dropped), streamed: a read error or a file in another format ends them with a BadInput."""
    return _lines(path)


def read_batch(
    path: Path, max_prompt_chars: int, max_tokens: int | None = None
) -> tuple[list[InputRequest], list[BadInput]]:
    """All good requests and all errors (bad lines, duplicate ids, a corrupt gzip stream) of a file, in line order."""
    good: list[InputRequest] = []
    bad: list[BadInput] = []
    for _, req in parsed_requests(path, max_prompt_chars, max_tokens):
        if isinstance(req, BadInput):
            bad.append(req)
        else:
            good.append(req)
    return good, bad


def parsed_lines(
    path: Path, max_prompt_chars: int, max_tokens: int | None = None
) -> Generator[tuple[int, InputRequest | BadInput]]:
    """Each non-blank line of a file, streamed, as its request or its error (bad JSON or fields, a read error or a
    file in another format, which ends the lines); a custom id seen before is not checked here."""
    lines = _lines(path)
    try:
        for number, raw in lines:
            if isinstance(raw, BadInput):
                yield number, raw
                continue
            try:
                yield number, parse_line(raw, number, max_prompt_chars, max_tokens)
            except BadInput as exc:
                yield number, exc
    finally:
        lines.close()  # the file, when the reader stops early


def parsed_requests(
    path: Path, max_prompt_chars: int, max_tokens: int | None = None
) -> Iterator[tuple[int, InputRequest | BadInput]]:
    """``parsed_lines``, with a custom id seen on an earlier line an error (the check and ``read_batch``)."""
    seen: dict[str, int] = {}
    for number, req in parsed_lines(path, max_prompt_chars, max_tokens):
        if isinstance(req, InputRequest):
            if req.custom_id in seen:
                req = BadInput(number, f"duplicate id {req.custom_id!r} (first on line {seen[req.custom_id]})")
            else:
                seen[req.custom_id] = number
        yield number, req


def _lines(path: Path) -> Generator[tuple[int, bytes | BadInput]]:
    """The file's non-blank lines, numbered from 1, without line ends (and the BOM); a read error ends them."""
    with open(path, "rb") as f:
        compressed = f.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        f.seek(0)
        stream: Iterable[bytes] = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        number = 0
        try:
            for number, raw in enumerate(stream, start=1):
                if number == 1:
                    raw = raw.removeprefix(UTF8_BOM)
                    if other := _other_format(raw):
                        yield number, BadInput(number, f"not a JSON lines file: this is {other}")
                        return
                raw = raw.rstrip(b"\r\n")
                if raw.strip():
                    yield number, raw
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            if not compressed:
                raise
            yield number + 1, BadInput(number + 1, f"the gzip stream is corrupt or cut short: {exc}")


def _other_format(first: bytes) -> str | None:
    return next((what for magic, what in OTHER_FORMATS.items() if first.startswith(magic)), None)
