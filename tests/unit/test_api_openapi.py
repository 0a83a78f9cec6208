"""The OpenAPI document of ``thinkroute serve``: committed == generated, it describes exactly the app's routes,
its references resolve, and its component schemas are the models' own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import Route

from schemas import openapi
from schemas.api import Batch, BatchCreate, ErrorResponse, FileObject
from tests.unit.api_fakes import Api, make_api


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(openapi.OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


@pytest.fixture
def api() -> Iterator[Api]:
    yield from make_api()


def test_committed_document_matches_the_generator() -> None:
    assert openapi.OPENAPI_PATH.is_file(), "schemas/openapi.json missing: run `python -m schemas`"
    assert openapi.OPENAPI_PATH.read_text(encoding="utf-8") == openapi.render(), (
        "schemas/openapi.json drifted: run `python -m schemas`"
    )


def test_it_describes_exactly_the_apps_routes(doc: dict[str, Any], api: Api) -> None:
    served = {
        (method.lower(), route.path)
        for route in api.client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    found = set(refs(doc))
    assert found
    for ref in found:
        name = ref.removeprefix("#/components/schemas/")
        assert name in doc["components"]["schemas"], ref


def test_v1_needs_the_key_and_every_route_documents_its_errors(doc: dict[str, Any]) -> None:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert op["security"] == [{"bearerAuth": []}], (method, path)
                assert {"200", "401"} <= set(op["responses"]), (method, path)
            else:
                assert op["security"] == [], (method, path)
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert "409" in doc["paths"]["/v1/batches/{batch_id}/cancel"]["post"]["responses"]
    assert "413" in doc["paths"]["/v1/files"]["post"]["responses"]


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        (Batch, "serialization"),
        (FileObject, "serialization"),
        (ErrorResponse, "serialization"),
        (BatchCreate, "validation"),
    ],
)
def test_component_schemas_are_the_models(doc: dict[str, Any], model: Any, mode: Any) -> None:
    schema = model.model_json_schema(ref_template=openapi.REF, mode=mode)
    schema.pop("$defs", None)
    assert doc["components"]["schemas"][model.__name__] == schema
