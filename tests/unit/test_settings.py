"""The settings: frozen, every derived value computed from them in one place."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from workers.settings import InferenceSettings, KafkaSecurity, RouterSettings, Settings, Topics


def test_settings_are_frozen() -> None:
    s = Settings(kafka_bootstrap="k:9092")
    with pytest.raises(ValidationError):
        s.default_model = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.router.batch_max = 1  # type: ignore[misc]
    moved = s.model_copy(update={"kafka_bootstrap": "other:9092"})  # a changed copy is how to vary one
    assert moved.kafka_bootstrap == "other:9092" and s.kafka_bootstrap == "k:9092"


def test_router_values_derived_from_the_settings() -> None:
    r = RouterSettings(batch_max=16, batch_wait_ms=25)
    assert r.batch_wait_s == 0.025 and r.pending_limit == 64 and r.max_poll_records == 500
    assert RouterSettings(batch_max=1000, max_pending=10).pending_limit == 10
    assert RouterSettings(batch_max=1000).max_poll_records == 1000
    assert RouterSettings().pending_limit == 4 * 64


def test_llm_urls_topics_and_escalation_topic() -> None:
    s = Settings(
        llm_base_url="http://all/v1",
        llm_direct_base_url="http://direct/v1",
        llm_model_urls={"big": "http://big/v1"},
        topics=Topics(reasoning="r", direct="d"),
    )
    assert s.llm_url("reasoning", "m") == "http://all/v1" and s.llm_url("direct", "m") == "http://direct/v1"
    assert s.llm_url("direct", "big") == "http://big/v1"
    assert s.topics.routed() == ("r", "d") and s.topics.for_route("reasoning") == "r"
    assert s.escalation_topic == "r"
    assert Settings(inference=InferenceSettings(escalate_topic="e")).escalation_topic == "e"
    assert InferenceSettings(commit_interval_ms=250).commit_interval_s == 0.25
    with pytest.raises(ValueError, match="THINKROUTE_LLM_BASE_URL"):
        Settings(llm_base_url=None, llm_direct_base_url=None, llm_model_urls={}).llm_url("direct", "m")


def test_kafka_settings_carry_bootstrap_security_and_session_timeout() -> None:
    sec = KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SecretStr("pw"))
    k = Settings(kafka_bootstrap="k:9092", kafka=sec, session_timeout_ms=8000).kafka_settings()
    assert (k.bootstrap, k.session_timeout_ms, k.heartbeat_interval_ms) == ("k:9092", 8000, 2000)
    assert k.client_kwargs() == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "u",
        "sasl_plain_password": "pw",
    }
    plain = Settings(kafka_bootstrap="k:9092", kafka=KafkaSecurity()).kafka_settings()
    assert plain.client_kwargs() == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert Settings.model_fields["session_timeout_ms"].default == 10_000  # the one default of the timeout
    with pytest.raises(ValueError, match="THINKROUTE_KAFKA_BOOTSTRAP"):
        Settings(kafka_bootstrap=None).kafka_settings()
