"""Keys of ``thinkroute serve``: OpenAI's 401 answers for a missing and a wrong key, the keys file and the
setting merged, 404 in OpenAI's shape for every other /v1 path, and the routes that need no key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas import openapi
from tests.unit.api_fakes import KEYS, Api, auth, make_api
from workers.api.auth import INCORRECT, MISSING, Keys
from workers.errors import ConfigError
from workers.runtime.apikeys import key_hash
from workers.settings import ApiSettings


@pytest.fixture
def api() -> Iterator[Api]:
    yield from make_api()


ROUTES = [
    ("GET", "/v1/files"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files/file-x"),
    ("DELETE", "/v1/files/file-x"),
    ("GET", "/v1/files/file-x/content"),
    ("GET", "/v1/batches"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches/batch_x"),
    ("POST", "/v1/batches/batch_x/cancel"),
    ("GET", "/v1/models"),  # not served: still 401 before 404
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "tr-alice-key"])
def test_a_missing_key_is_401_with_openais_message(api: Api, method: str, path: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = api.client.request(method, path, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": {"message": MISSING, "type": "invalid_request_error", "param": None, "code": None}}


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_wrong_key_is_401_invalid_api_key(api: Api, method: str, path: str) -> None:
    r = api.client.request(method, path, headers={"Authorization": "Bearer tr-not-a-key"})
    assert r.status_code == 401
    assert r.json() == {
        "error": {"message": INCORRECT, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    }


def test_the_scheme_is_case_insensitive_and_the_key_exact(api: Api) -> None:
    assert api.client.get("/v1/files", headers={"Authorization": f"bearer {KEYS['bob']}"}).status_code == 200
    assert api.client.get("/v1/files", headers={"Authorization": f"Bearer {KEYS['bob']}x"}).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("PUT", "/v1/files"), ("DELETE", "/v1/batches/b")],
)
def test_every_other_v1_route_is_404_in_openais_shape(api: Api, method: str, path: str) -> None:
    r = api.client.request(method, path, headers=auth())
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_health_and_the_openapi_document_need_no_key(api: Api) -> None:
    r = api.client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    api.store.redis.up = False
    r = api.client.get("/health")
    assert (r.status_code, r.json()) == (503, {"status": "unavailable"})
    r = api.client.get("/openapi.json")
    assert r.status_code == 200 and r.json() == openapi.build()


def test_keys_from_the_file_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\nalice {key_hash('k1')}\n", encoding="utf-8")
    keys = Keys.from_settings(ApiSettings(keys_file=path, keys={key_hash("k2"): "bob"}))
    assert len(keys) == 2
    assert keys.owner("Bearer k1") == "alice" and keys.owner("Bearer k2") == "bob"


@pytest.mark.parametrize(
    ("digest", "owner"), [("abc", "bob"), ("A" * 64, "bob"), (key_hash("k"), ""), (key_hash("k"), "b b")]
)
def test_a_malformed_key_setting_is_a_config_error(digest: str, owner: str) -> None:
    with pytest.raises(ConfigError, match="THINKROUTE_API__KEYS"):
        Keys.from_settings(ApiSettings(keys={digest: owner}))


def test_a_malformed_keys_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice {key_hash('k1')}\nbob not-a-hash\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"keys:2"):
        Keys.from_settings(ApiSettings(keys_file=path))
