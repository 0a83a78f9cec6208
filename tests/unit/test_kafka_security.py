"""The security settings reach every Kafka client ThinkRoute builds: the workers' producer and consumer (also
the CLI's and the API's producer), the topic admin and the lag reader's admin and consumer. FastStream is
not among them: only ``python -m schemas`` imports it, to write the AsyncAPI document.

Nothing connects here: the clients are built and inspected (aiokafka keeps what it was given on its
``AIOKafkaClient``), and the two that ThinkRoute builds and starts inside a function are caught at start.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.client import AIOKafkaClient

from tests.integration.tls import TlsFiles, make_certificates
from workers.kafka import clients, lag
from workers.kafka.clients import ensure_topics, make_consumer, make_producer
from workers.kafka.security import tls_problem
from workers.settings import KafkaSettings, Settings


class Caught(Exception):
    """Raised instead of starting a client: the test has what it wanted."""


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_certificates(tmp_path / "tls")


@pytest.fixture
def secured(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> KafkaSettings:
    """SASL_SSL with SCRAM, a CA and a client certificate, read from the environment as a deployment sets it."""
    env = {
        "THINKROUTE_KAFKA_BOOTSTRAP": "kafka-1:9093,kafka-2:9093",
        "THINKROUTE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "THINKROUTE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "THINKROUTE_KAFKA__SASL_USERNAME": "thinkroute",
        "THINKROUTE_KAFKA__SASL_PASSWORD": "pw-123",
        "THINKROUTE_KAFKA__SSL_CAFILE": str(tls.ca),
        "THINKROUTE_KAFKA__SSL_CERTFILE": str(tls.cert),
        "THINKROUTE_KAFKA__SSL_KEYFILE": str(tls.key),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings().kafka_settings()


def assert_secured(client: AIOKafkaClient) -> None:
    assert client._security_protocol == "SASL_SSL"
    assert (client._sasl_mechanism, client._sasl_plain_username, client._sasl_plain_password) == (
        "SCRAM-SHA-512",
        "thinkroute",
        "pw-123",
    )
    ctx = client._ssl_context
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    subjects = [dict(x[0] for x in ca["subject"]) for ca in ctx.get_ca_certs()]
    assert {"commonName": "thinkroute test CA"} in subjects  # the configured CA, loaded
    assert client._bootstrap_servers == "kafka-1:9093,kafka-2:9093"


async def test_the_workers_producer_and_consumer_carry_every_security_setting(secured: KafkaSettings) -> None:
    producer = make_producer(secured)
    consumer = make_consumer(secured, "g")
    assert_secured(producer.client)
    assert_secured(consumer._client)
    await producer.stop()
    await consumer.stop()


async def test_the_topic_admin_carries_them(secured: KafkaSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []

    async def catch(client: Any, cfg: KafkaSettings) -> None:
        assert cfg is secured
        started.append(client)
        raise Caught

    monkeypatch.setattr(clients, "start_client", catch)
    with pytest.raises(Caught):
        await ensure_topics(secured, ["t"], 1)
    assert len(started) == 1
    assert_secured(started[0]._client)


async def test_the_lag_readers_admin_and_consumer_carry_them(
    secured: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []

    async def catch(client: Any, cfg: KafkaSettings) -> None:
        started.append(client)
        if len(started) == 2:
            raise Caught

    monkeypatch.setattr(lag, "start_client", catch)
    with pytest.raises(Caught):
        await lag.measure(secured, {"g": ["t"]})
    assert [type(c).__name__ for c in started] == ["AIOKafkaAdminClient", "AIOKafkaConsumer"]
    for client in started:
        assert_secured(client._client)


async def test_plaintext_builds_no_tls_context_and_no_sasl() -> None:
    kc = Settings(kafka_bootstrap="k:9092").kafka_settings()
    producer = make_producer(kc)
    client = producer.client
    assert (client._security_protocol, client._ssl_context, client._sasl_mechanism) == ("PLAINTEXT", None, "PLAIN")
    assert client._sasl_plain_username is None
    await producer.stop()


async def test_no_tls_probe_without_tls() -> None:
    assert await tls_problem(Settings(kafka_bootstrap="127.0.0.1:1").kafka_settings()) is None


async def test_the_tls_probe_says_nothing_when_the_broker_cannot_be_reached(tls: TlsFiles) -> None:
    """A refused port is aiokafka's error to report (unreachable), not a TLS problem."""
    security = {"security_protocol": "SSL", "ssl_cafile": tls.ca}
    kc = KafkaSettings.model_validate({"bootstrap": "127.0.0.1:1", "security": security, "session_timeout_ms": 6000})
    assert await tls_problem(kc) is None
