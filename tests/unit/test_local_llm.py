"""The embedded stack's LLM backend: replay by default, the user's server when an LLM URL is set."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from workers.cli.console import describe_llm
from workers.errors import ConfigError
from workers.inference.families import family_for
from workers.local import llm
from workers.settings import DEFAULT_FAMILIES, Settings

REPLAY_URL = "http://127.0.0.1:4000/v1"


def test_no_llm_setting_means_the_replay_server() -> None:
    s = Settings(llm_api_key=SecretStr("k-123"))
    assert not s.external_llm
    assert llm.client_env(s, REPLAY_URL) == {"THINKROUTE_LLM_BASE_URL": REPLAY_URL}
    d = llm.describe(s, REPLAY_URL)
    assert d == {
        "backend": "replay",
        "base_url": REPLAY_URL,
        "routes": {"reasoning": REPLAY_URL, "direct": REPLAY_URL},
        "model_urls": {},
        "api_key": False,
    }
    assert describe_llm(d) == f"LLM: replay at {REPLAY_URL}"


@pytest.mark.parametrize(
    "fields",
    [
        {"llm_base_url": "http://llm:8000/v1"},
        {"llm_reasoning_base_url": "http://a/v1", "llm_direct_base_url": "http://b/v1"},
        {"llm_model_urls": {"m": "http://m/v1"}},
    ],
)
def test_any_llm_url_is_external(fields: dict[str, object]) -> None:
    assert Settings.model_validate(fields).external_llm


def test_the_users_settings_reach_the_workers_and_the_key_only_them() -> None:
    s = Settings(
        llm_base_url="http://user:pw@llm.internal:8000/v1",
        llm_direct_base_url="http://small:8001/v1",
        llm_model_urls={"big": "http://big:8002/v1"},
        llm_api_key=SecretStr("sk-secret"),
    )
    llm.check_routes(s)
    env = llm.client_env(s, None)
    assert env == {
        "THINKROUTE_LLM_BASE_URL": "http://user:pw@llm.internal:8000/v1",
        "THINKROUTE_LLM_DIRECT_BASE_URL": "http://small:8001/v1",
        "THINKROUTE_LLM_MODEL_URLS": json.dumps({"big": "http://big:8002/v1"}),
    }
    assert llm.secret_env(s) == {"THINKROUTE_LLM_API_KEY": "sk-secret"}
    d = llm.describe(s, None)
    assert d == {
        "backend": "external",
        "base_url": "http://llm.internal:8000/v1",
        "routes": {"reasoning": "http://llm.internal:8000/v1", "direct": "http://small:8001/v1"},
        "model_urls": {"big": "http://big:8002/v1"},
        "api_key": True,
    }
    line = describe_llm(d)
    assert line == (
        "LLM: external at reasoning http://llm.internal:8000/v1, direct http://small:8001/v1 (+1 per-model URLs)"
    )
    assert "sk-secret" not in json.dumps(d) + line and "pw" not in json.dumps(d) + line


def test_a_worker_environment_from_client_env_reads_back_as_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(llm_reasoning_base_url="http://a/v1", llm_direct_base_url="http://b/v1", llm_model_urls={"m": "x"})
    for k, v in (llm.client_env(s, None) | {"THINKROUTE_LLM_API_KEY": "k"}).items():
        monkeypatch.setenv(k, v)
    back = Settings()
    assert (back.reasoning_url(), back.direct_url(), back.llm_model_urls) == ("http://a/v1", "http://b/v1", {"m": "x"})
    assert back.llm_api_key is not None and back.llm_api_key.get_secret_value() == "k"


def test_a_route_without_a_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the direct route has no LLM URL"):
        llm.check_routes(Settings(llm_reasoning_base_url="http://a/v1"))
    with pytest.raises(ConfigError, match="the reasoning and direct routes have no LLM URL"):
        llm.check_routes(Settings(llm_model_urls={"m": "http://m/v1"}))


def test_redact_drops_only_the_credentials() -> None:
    assert llm.redact("https://u:p@h:1/v1?x=1") == "https://h:1/v1?x=1"
    assert llm.redact("http://h/v1") == "http://h/v1"
    assert llm.redact(None) is None


def test_smollm2_sends_no_reasoning_switch() -> None:
    assert family_for("smollm2", DEFAULT_FAMILIES, "qwen3") == "none"
    assert family_for("HuggingFaceTB/SmolLM2-135M-Instruct", DEFAULT_FAMILIES, "qwen3") == "none"
    assert family_for("Qwen/Qwen3-30B-A3B", DEFAULT_FAMILIES, "qwen3") == "qwen3"
