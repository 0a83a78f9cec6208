"""Kafka transport security for real: TLS with a CA made in the test, and Tansu's SASL.

TLS: the pipeline (topics, submit, router, inference, lag, and librdkafka reading the routed topics) over
TLS with ``THINKROUTE_KAFKA__SECURITY_PROTOCOL=SSL`` and ``THINKROUTE_KAFKA__SSL_CAFILE``; a client without
the CA fails at once with an error that names the CA (not a hang); mutual TLS with ``SSL_CERTFILE`` and
``SSL_KEYFILE``, and a client without a certificate refused with an error that says so. Tansu cannot
terminate TLS itself (see ``tests/integration/tls.py``), so the broker sits behind a TLS front that
advertises its own address.

SASL: Tansu's ``--authentication`` is SCRAM only and its storage never keeps SCRAM credentials (README,
"Kafka security"), so no client can authenticate; what is tested is that every honest client is refused,
quickly and clearly, that a client without SASL is refused too, and (why the embedded stack stays PLAINTEXT
on loopback) that a client ignoring the broker's ``e=unknown-user`` is let in.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import ScramAuthenticator
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import KafkaError, Producer
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.helpers import ROOT
from tests.integration.helpers import (
    assert_exact_totals,
    pipeline_topics,
    running,
    sample_requests,
    submit_requests,
)
from tests.integration.rdkafka import consume, rdkafka
from tests.integration.test_cli_run import embedded_env, one_error_line, thinkroute
from tests.integration.tls import TlsFiles, TlsFront, make_certificates
from workers.errors import ConfigError
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, make_consumer, make_producer, start_client
from workers.kafka.lag import measure
from workers.local.binaries import broker_binary
from workers.local.services import Service, free_port, start_broker
from workers.router.serve import serve_router
from workers.settings import KafkaSecurity, KafkaSettings, Settings
from workers.store.jobstore import Store
from workers.submit.jobs import wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def refused(client: AIOKafkaProducer | AIOKafkaConsumer, kc: KafkaSettings, error: type[Exception]) -> str:
    """Start ``client``, which must fail with ``error``; stop it (nothing left open) and return the message."""
    with pytest.raises(error) as caught:
        await start_client(client, kc)
    await client.stop()
    return str(caught.value)


@dataclass
class TlsBroker:
    broker: Service
    front: TlsFront
    files: TlsFiles


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    files = make_certificates(tmp_path / "tls")
    port = free_port()
    broker = start_broker(tmp_path / "broker", advertised_port=port)
    front = TlsFront(port, broker.address, files).start()
    yield TlsBroker(broker, front, files)
    front.stop()
    broker.stop()


def kafka(bootstrap: str, **security: object) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, security=KafkaSecurity.model_validate(security), session_timeout_ms=6000)


async def test_the_pipeline_over_tls_with_the_configured_ca(
    tls_broker: TlsBroker, settings: Settings, artifact: Path, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THINKROUTE_KAFKA__SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("THINKROUTE_KAFKA__SSL_CAFILE", str(tls_broker.files.ca))
    from_env = Settings().kafka
    assert (from_env.security_protocol, from_env.ssl_cafile) == ("SSL", tls_broker.files.ca)
    s = settings.model_copy(update={"kafka_bootstrap": tls_broker.front.address, "kafka": from_env})
    t, n = s.topics, 20
    store = Store(redis)
    await pipeline_topics(s)  # admin over TLS; before the workers subscribe (else auto-created, 4 partitions)
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        meta = await submit_requests(s, store, sample_requests(n), "tls")  # producer over TLS
        totals = await wait_for_job(store, meta, check=w.check, timeout_s=180)
    results = await assert_exact_totals(store, meta.job_id, n)
    assert sorted(r.custom_id for r in results) == sorted(r.custom_id for r in sample_requests(n))

    # the lag reader (its own admin and consumer) over TLS: both groups drained
    lags = await measure(s.kafka_settings(), {s.router.group: [t.prompts], s.inference.group: list(t.routed())})
    assert {g.group: (g.total, g.consumed) for g in lags} == {s.router.group: (0, n), s.inference.group: (0, n)}

    # librdkafka over the same TLS listener, trusting the same CA: the routed topics hold exactly the job
    routed = {t.reasoning: totals.routes["reasoning"].requests, t.direct: totals.routes["direct"].requests}
    tls = {"security.protocol": "SSL", "ssl.ca.location": str(tls_broker.files.ca)}
    read = await asyncio.to_thread(consume, tls_broker.front.address, routed, s.partitions, 60, **tls)
    assert sum(len(m) for m in read.values()) == n
    assert tls_broker.front.handshakes >= 4  # every client connected through the TLS front


async def test_a_client_that_does_not_trust_the_ca_fails_at_once_and_says_so(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    address = tls_broker.front.address
    other_ca = make_certificates(tmp_path / "other").ca
    cases = {
        "the system's CAs (THINKROUTE_KAFKA__SSL_CAFILE is unset)": kafka(address, security_protocol="SSL"),
        f"the CA in {other_ca}": kafka(address, security_protocol="SSL", ssl_cafile=other_ca),
    }
    for trusted, kc in cases.items():
        for client in (make_producer(kc), make_consumer(kc, "g-untrusted")):
            assert await refused(client, kc, ConfigError) == (
                f"Kafka at {address}: TLS: the broker's certificate is not trusted by {trusted}: "
                "unable to get local issuer certificate"
            )
        with pytest.raises(ConfigError, match="not trusted"):
            await ensure_topics(kc, ["t"], 1)
    # a PLAINTEXT client on the TLS port: aiokafka's own connection error (the front drops it)
    plain = kafka(address)
    await refused(make_producer(plain), plain, KafkaConnectionError)
    assert tls_broker.front.handshakes == 0  # no client above got a TLS session

    # the CLI: one error line, exit 2 (a configuration mistake), within its connect bound
    env = {
        "THINKROUTE_KAFKA_BOOTSTRAP": address,
        "THINKROUTE_KAFKA__SECURITY_PROTOCOL": "SSL",
        "THINKROUTE_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = thinkroute("submit", str(ROOT / "loadgen" / "samples" / "prompts_20.jsonl"), env=embedded_env(**env))
    assert proc.returncode == 2, proc.stderr
    assert "TLS: the broker's certificate is not trusted by the system's CAs" in one_error_line(proc)


@pytest.fixture
def mtls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    files = make_certificates(tmp_path / "tls")
    port = free_port()
    broker = start_broker(tmp_path / "broker", advertised_port=port)
    front = TlsFront(port, broker.address, files, client_certs=True).start()
    yield TlsBroker(broker, front, files)
    front.stop()
    broker.stop()


async def test_mutual_tls_with_the_configured_client_certificate(mtls_broker: TlsBroker, unique: str) -> None:
    address, files = mtls_broker.front.address, mtls_broker.files
    kc = kafka(
        address,
        security_protocol="SSL",
        ssl_cafile=files.ca,
        ssl_certfile=files.client_cert,
        ssl_keyfile=files.client_key,
    )
    topic = f"mtls-{unique}"
    await ensure_topics(kc, [topic], 2)
    producer = make_producer(kc)
    await start_client(producer, kc)
    try:
        sent = [await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode()) for i in range(5)]
    finally:
        await producer.stop()
    assert len({(m.partition, m.offset) for m in sent}) == 5
    tls = {"security.protocol": "SSL", "ssl.ca.location": str(files.ca)}
    tls |= {"ssl.certificate.location": str(files.client_cert), "ssl.key.location": str(files.client_key)}
    read = await asyncio.to_thread(consume, address, {topic: 5}, 2, 60, **tls)
    assert sorted(m.value() for m in read[topic]) == [f"v{i}".encode() for i in range(5)]

    # without a client certificate the broker's side refuses the session; the error says which certificate
    anonymous = kafka(address, security_protocol="SSL", ssl_cafile=files.ca)
    assert await refused(make_producer(anonymous), anonymous, ConfigError) == (
        f"Kafka at {address}: TLS: the broker ended the session after the handshake; the client sent no "
        "certificate (THINKROUTE_KAFKA__SSL_CERTFILE is unset)"
    )


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[Service]:
    svc = start_broker(tmp_path / "sasl", authentication=True)
    yield svc
    svc.stop()


async def test_tansu_sasl_refuses_honest_clients_clearly_and_admits_a_rogue_one(
    sasl_broker: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = sasl_broker.address
    # users cannot be created: the broker wants authentication for that too, and it keeps no credentials
    argv = [broker_binary(), "user", "create", "--broker", f"tcp://{address}", "alice", "s3cret"]
    created = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=30)
    assert "early eof" in created.stdout + created.stderr  # the broker dropped it: NotAuthenticated

    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        kc = kafka(
            address,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_username="alice",
            sasl_password=SecretStr("s3cret"),
        )
        message = await refused(make_producer(kc), kc, ConfigError)
        assert message.startswith(f"Kafka at {address}: SASL {mechanism} authentication of user 'alice'")

    # PLAIN is not offered (the broker closes the connection: no shared mechanism), nor is no SASL at all
    plain = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "a"}
    for kc in (kafka(address, **plain, sasl_password="b"), kafka(address)):
        await refused(make_producer(kc), kc, KafkaConnectionError)

    # librdkafka: SCRAM answered with unknown-user, nothing delivered
    errors: list[KafkaError] = []
    conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512"}
    conf |= {"sasl.username": "alice", "sasl.password": "s3cret", "message.timeout.ms": 3000}
    producer = Producer(rdkafka(address, error_cb=errors.append, **conf))
    delivered: list[KafkaError | None] = []
    producer.produce("t", b"x", on_delivery=lambda err, _msg: delivered.append(err))
    await asyncio.to_thread(producer.flush, 10)
    producer.close()
    assert [e.code() for e in delivered if e is not None] == [KafkaError._MSG_TIMED_OUT]
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth and "unknown-user" in auth[0].str()

    # a client that ignores the server-final error (aiokafka with its check patched out) is let in: the
    # broker marks the connection authenticated when the exchange ends, whatever its outcome
    seen: list[str] = []
    monkeypatch.setattr(ScramAuthenticator, "process_server_final_message", lambda _self, msg: seen.append(msg))
    rogue = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "mallory"}
    kc = kafka(address, **rogue, sasl_password=SecretStr("anything"))
    producer = make_producer(kc)
    await start_client(producer, kc)
    try:
        assert (await producer.send_and_wait("rogue", b"in", key=b"k")).offset == 0
    finally:
        await producer.stop()
    assert seen and set(seen) == {"e=unknown-user"}


async def test_sasl_ssl_reaches_tansus_scram_through_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SASL_SSL: the SCRAM exchange runs inside the verified TLS session; the honest client is refused as on
    SASL_PLAINTEXT, and the transport itself carries records (shown with the rogue client of the test above)."""
    files = make_certificates(tmp_path / "tls")
    port = free_port()
    broker = start_broker(tmp_path / "broker", advertised_port=port, authentication=True)
    front = TlsFront(port, broker.address, files).start()
    try:
        sasl = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "ssl_cafile": files.ca}
        kc = kafka(front.address, **sasl, sasl_username="alice", sasl_password=SecretStr("s3cret"))
        message = await refused(make_producer(kc), kc, ConfigError)
        assert "SASL SCRAM-SHA-256 authentication of user 'alice' failed" in message
        assert front.handshakes >= 1

        monkeypatch.setattr(ScramAuthenticator, "process_server_final_message", lambda _self, _msg: None)
        producer = make_producer(kc)
        await start_client(producer, kc)
        try:
            assert (await producer.send_and_wait("over-tls", b"in", key=b"k")).offset == 0
        finally:
            await producer.stop()
    finally:
        front.stop()
        broker.stop()
