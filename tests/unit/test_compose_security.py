"""compose/: no port is published beyond loopback unless configured, and Kafka's host listener can require
a login (SASL PLAIN) that no one passes without the configured password."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_compose import COMPOSE, rendered

PUBLISHED = {"kafka", "redis", "prometheus", "alertmanager", "grafana", "api"}


def env_file(tmp_path: Path, **extra: str) -> Path:
    path = tmp_path / "test.env"
    base = (COMPOSE / ".env.example").read_text()
    path.write_text(base + "".join(f"{k}={v}\n" for k, v in extra.items()))
    return path


def ports(model: dict) -> dict[str, set[str]]:  # type: ignore[type-arg]
    return {name: {p.get("host_ip", "") for p in svc.get("ports", [])} for name, svc in model["services"].items()}


def test_every_published_port_is_on_loopback_unless_configured(tmp_path: Path) -> None:
    published = {n: ips for n, ips in ports(rendered("local")).items() if ips}
    assert published == {name: {"127.0.0.1"} for name in PUBLISHED}  # "" would be every interface
    configured = ports(rendered("local", env_file(tmp_path, PUBLISH_ADDRESS="10.1.2.3")))
    assert {n: ips for n, ips in configured.items() if ips} == {name: {"10.1.2.3"} for name in PUBLISHED}


def test_kafka_host_listener_takes_a_login_when_asked(tmp_path: Path) -> None:
    env = rendered("local")["services"]["kafka"]["environment"]
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    # asked for, but no password: the login module has no user, so no login succeeds
    no_password = env_file(tmp_path, KAFKA_EXTERNAL_PROTOCOL="SASL_PLAINTEXT")
    env = rendered("local", no_password)["services"]["kafka"]["environment"]
    assert "EXTERNAL:SASL_PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    assert env["KAFKA_LISTENER_NAME_EXTERNAL_PLAIN_SASL_JAAS_CONFIG"] == f"{jaas};"
    with_password = env_file(tmp_path, KAFKA_EXTERNAL_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_PASSWORD="pw-1")
    env = rendered("local", with_password)["services"]["kafka"]["environment"]
    assert env["KAFKA_LISTENER_NAME_EXTERNAL_PLAIN_SASL_JAAS_CONFIG"] == f'{jaas} user_thinkroute="pw-1";'
    assert env["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert "INTERNAL:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]  # the compose network's own
