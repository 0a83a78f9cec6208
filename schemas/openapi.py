"""The OpenAPI 3.1 description of ``thinkroute serve`` (``schemas/openapi.json``, drift-tested; schemathesis
fuzzes the server from it): the OpenAI Files and Batches routes it serves, with the models of
``schemas.api`` as their bodies, every status each route answers, and the bearer key of ``/v1``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.api import Batch, BatchCreate, BatchList, ErrorResponse, FileDeleted, FileList, FileObject
from schemas.base import Strict

OPENAPI_PATH: Final = Path(__file__).resolve().parent / "openapi.json"
VERSION: Final = "1.0.0"
REF: Final = "#/components/schemas/{model}"
MAX_PARAM_CHARS: Final = 256  # query strings and path ids (longer ones are refused with 400 / never found)


class Health(Strict):
    """``GET /health``: ``ok`` when the server's Redis answers, else ``unavailable`` (503)."""

    status: Literal["ok", "unavailable"]


MODELS: Final[list[tuple[type[BaseModel], JsonSchemaMode]]] = [
    (BatchCreate, "validation"),
    (Batch, "serialization"),
    (BatchList, "serialization"),
    (FileObject, "serialization"),
    (FileList, "serialization"),
    (FileDeleted, "serialization"),
    (ErrorResponse, "serialization"),
    (Health, "serialization"),
]

ERRORS: Final = {
    400: "a parameter or the body is invalid (`error.param` names it)",
    401: "no API key, or an unknown one",
    404: "no such object (or another owner's)",
    409: "the batch is past cancelling",
    413: "the body is larger than the server's limit",
    503: "the server's store is unavailable, or the server is stopping",
}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    ok: str | None  # the 200 body's model (None: ``content`` is given)
    errors: tuple[int, ...]
    params: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    content: dict[str, Any] | None = None
    auth: bool = True
    extra: dict[int, tuple[str, str]] = field(default_factory=dict)  # status -> (description, model)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_PARAM_CHARS}
    return {"name": name, "in": "path", "required": True, "schema": schema}


_CURSOR = {"type": "string", "minLength": 1, "maxLength": MAX_PARAM_CHARS}
_UPLOAD = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the JSONL batch file"},
                    "purpose": {"type": "string", "enum": ["batch"]},
                },
            }
        }
    },
}
_JSON_BODY = {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model="BatchCreate")}}}}
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

OPERATIONS: Final = (
    Op(
        "post",
        "/v1/files",
        "createFile",
        "Upload a batch file (purpose batch)",
        "FileObject",
        (400, 401, 413, 503),
        body=_UPLOAD,
    ),
    Op(
        "get",
        "/v1/files",
        "listFiles",
        "The caller's files",
        "FileList",
        (400, 401, 503),
        params=(
            _query("purpose", _CURSOR, "only files of this purpose"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10000}, "page size"),
            _query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "by created_at"),
            _query("after", _CURSOR, "the last file id of the previous page"),
        ),
    ),
    Op(
        "get",
        "/v1/files/{file_id}",
        "retrieveFile",
        "A file's metadata",
        "FileObject",
        (401, 404, 503),
        params=(_path("file_id"),),
    ),
    Op(
        "delete",
        "/v1/files/{file_id}",
        "deleteFile",
        "Delete a file",
        "FileDeleted",
        (401, 404, 503),
        params=(_path("file_id"),),
    ),
    Op(
        "get",
        "/v1/files/{file_id}/content",
        "downloadFile",
        "A file's bytes (streamed)",
        None,
        (401, 404, 503),
        params=(_path("file_id"),),
        content=_BINARY,
    ),
    Op(
        "post",
        "/v1/batches",
        "createBatch",
        "Create a batch from an uploaded file",
        "Batch",
        (400, 401, 404, 413, 503),
        body=_JSON_BODY,
    ),
    Op(
        "get",
        "/v1/batches",
        "listBatches",
        "The caller's batches, newest first",
        "BatchList",
        (400, 401, 503),
        params=(
            _query("after", _CURSOR, "the last batch id of the previous page"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "page size"),
        ),
    ),
    Op(
        "get",
        "/v1/batches/{batch_id}",
        "retrieveBatch",
        "A batch",
        "Batch",
        (401, 404, 503),
        params=(_path("batch_id"),),
    ),
    Op(
        "post",
        "/v1/batches/{batch_id}/cancel",
        "cancelBatch",
        "Cancel a batch",
        "Batch",
        (401, 404, 409, 503),
        params=(_path("batch_id"),),
    ),
    Op(
        "get",
        "/health",
        "health",
        "200 when the server's Redis answers",
        "Health",
        (),
        auth=False,
        extra={503: ("Redis does not answer", "Health")},
    ),
    Op(
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        None,
        (),
        auth=False,
        content={"application/json": {"schema": {"type": "object"}}},
    ),
)


def _ref(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=model)}}}


def _operation(op: Op) -> dict[str, Any]:
    ok = _ref(op.ok) if op.ok is not None else op.content
    responses: dict[str, Any] = {"200": {"description": "OK", "content": ok}}
    for status in op.errors:
        responses[str(status)] = {"description": ERRORS[status], "content": _ref("ErrorResponse")}
    for status, (description, model) in op.extra.items():
        responses[str(status)] = {"description": description, "content": _ref(model)}
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "responses": responses}
    if op.params:
        out["parameters"] = list(op.params)
    if op.body is not None:
        out["requestBody"] = op.body
    out["security"] = [{"bearerAuth": []}] if op.auth else []
    return out


def build() -> dict[str, Any]:
    _, components = models_json_schema(MODELS, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ThinkRoute Batch API",
            "version": VERSION,
            "description": "The subset of OpenAI's Files and Batches API that batch work uses, served by "
            "`thinkroute serve`; every prompt of a batch is routed to a reasoning or a direct LLM call.",
        },
        "servers": [{"url": "http://localhost:8080"}],
        "paths": paths,
        "components": {
            "schemas": components.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path = OPENAPI_PATH) -> Path:
    path.write_text(render(), encoding="utf-8")
    return path
