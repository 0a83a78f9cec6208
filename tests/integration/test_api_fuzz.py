"""A schemathesis pass over ``thinkroute serve`` from its OpenAPI document (a real server on the session broker
and Redis, in a thread, with a valid key): no 5xx, and every answer's status, content type, headers and body
are the ones the document declares. Bounded: 30 examples per operation (about 20 s in all).

The document is loaded when the module is collected (``schemas.openapi.build()``, what ``/openapi.json``
serves: the first test checks it is); schemathesis's loader from a fixture (``from_fixture``) does not run
under pytest 9."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas import openapi
from workers.api.auth import Keys
from workers.api.serve import serve_api
from workers.local.services import Service
from workers.runtime.apikeys import key_hash
from workers.settings import ApiSettings, Settings, Topics

pytestmark = pytest.mark.integration

KEY = "tr-fuzz-" + uuid.uuid4().hex
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served_url(broker: Service, redis_server: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """serve on its own event loop in a thread (the schemathesis tests are synchronous)."""
    unique = uuid.uuid4().hex[:10]
    s = Settings(
        kafka_bootstrap=broker.address,
        redis_url=SecretStr(f"redis://{redis_server.address}/0"),
        topics=Topics(prompts=f"p-{unique}", reasoning=f"r-{unique}", direct=f"d-{unique}", dead=f"x-{unique}"),
        partitions=1,
        api=ApiSettings(
            port=0,
            metrics_port=0,
            files_dir=tmp_path_factory.mktemp("fuzz-files"),
            keys={key_hash(KEY): f"fuzz-{unique}"},
            max_body_bytes=64 * 1024,
            max_file_bytes=256 * 1024,
        ),
        cache_dir=tmp_path_factory.mktemp("fuzz-cache"),
    )
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        state["stop"] = asyncio.Event()

        def ready(url: str) -> None:
            state["url"] = url
            started.set()

        await serve_api(s, Keys.from_settings(s.api), state["stop"], on_ready=ready)

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # pragma: no cover - reported below
            state["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="fuzz-serve", daemon=True)
    thread.start()
    assert started.wait(60), "serve did not start"
    assert "error" not in state, state.get("error")
    yield state["url"]
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(60)
    loop.close()


schema = schemathesis.openapi.from_dict(openapi.build())


def test_the_server_serves_the_fuzzed_document(served_url: str) -> None:
    with httpx.Client() as client:
        served = client.get(f"{served_url}/openapi.json")
    assert served.status_code == 200 and served.json() == schema.raw_schema


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_the_api_answers_as_documented(case: Any, served_url: str) -> None:
    case.call_and_validate(base_url=served_url, headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS, timeout=30)
