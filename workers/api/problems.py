"""Every refusal of the API in OpenAI's error shape (``schemas.api.ErrorResponse``), and the request parsing
that produces them: JSON bodies checked against their model, query parameters checked against their range.

OpenAI answers ``type: invalid_request_error`` for every 4xx (a missing or unknown key, a missing object, a
conflict); ``server_error`` only for 5xx, whose message never carries internals (they are logged)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from schemas.api import ErrorDetail, ErrorResponse

M = TypeVar("M", bound=BaseModel)

INVALID = "invalid_request_error"
SERVER = "server_error"
INTERNAL_MESSAGE = "The server had an error while processing your request. Sorry about that!"
UNAVAILABLE_MESSAGE = "The server is temporarily unavailable (its store did not answer); retry in a moment."
BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
MAX_PARAM_CHARS = 256  # ids and cursors in a query: longer ones are refused, not looked up


class ApiError(Exception):
    """A refusal: raised anywhere under a route, answered by the app's handler in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = INVALID,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = dict(headers or {})

    def response(self) -> Response:
        detail = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return json_response(ErrorResponse(error=detail), self.status, self.headers)


def json_response(model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json", headers=headers)


def internal_error() -> ApiError:
    return ApiError(500, INTERNAL_MESSAGE, type=SERVER)


def unavailable() -> ApiError:
    return ApiError(503, UNAVAILABLE_MESSAGE, type=SERVER, headers={"retry-after": "1"})


def no_such_file(file_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", param=param)


def no_such_batch(batch_id: str) -> ApiError:
    return ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")


def too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, f"{what} is larger than the limit of {limit} bytes.", code="request_too_large")


def parse_json(raw: bytes, model: type[M]) -> M:
    """The body as ``model``: 400 for a body that is not a JSON object, or a field that does not validate
    (``param`` names the first such field)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, BAD_JSON) from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def from_validation(exc: ValidationError) -> ApiError:
    """The first error of ``exc`` worded as OpenAI words them."""
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    if first["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if first["type"] == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter")
    return ApiError(400, f"Invalid value for '{param}': {first['msg']}.", param=param, code="invalid_value")


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid value for '{name}': expected an integer.", param=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"Invalid value for '{name}': must be between {lo} and {hi}.", param=name)
    return value


def str_param(request: Request, name: str, choices: tuple[str, ...] | None = None) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_PARAM_CHARS or "\x00" in raw:
        raise ApiError(400, f"Invalid value for '{name}': 1 to {MAX_PARAM_CHARS} characters.", param=name)
    if choices is not None and raw not in choices:
        raise ApiError(400, f"Invalid value for '{name}': must be one of {', '.join(choices)}.", param=name)
    return raw
