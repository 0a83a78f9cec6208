"""Starting a Kafka client with a clear error when its transport security is wrong.

aiokafka reports a TLS handshake that failed (an untrusted or mismatched certificate) and a client
certificate the broker refused only as ``KafkaConnectionError: Unable to bootstrap from [...]`` (the cause in
a log line, or none); and a SCRAM exchange whose
server-final message carries an error (``e=unknown-user``, ``e=invalid-proof``) instead of a signature as a
bare ``KeyError: 'v'``. ``start_client`` turns both into a ConfigError that says what failed and which
setting decides it, at once (no retry: a wrong CA or password does not heal).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol

from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from workers.errors import ConfigError
from workers.settings import KafkaSettings

PROBE_TIMEOUT_S = 5.0
ALERT_WAIT_S = 1.0  # a broker sends nothing unasked: silence this long means the session stands


class Startable(Protocol):
    async def start(self) -> None: ...


async def start_client(client: Startable, cfg: KafkaSettings) -> None:
    """``client.start()``; an authentication or TLS failure raises ConfigError naming the setting to check."""
    sec = cfg.security
    try:
        await client.start()
    except KafkaConnectionError as exc:
        problem = await tls_problem(cfg)
        if problem is None:
            raise
        raise ConfigError(f"Kafka at {cfg.bootstrap}: {problem}") from exc
    except KeyError as exc:
        if not (sec.security_protocol.startswith("SASL") and (sec.sasl_mechanism or "").startswith("SCRAM")):
            raise
        raise ConfigError(_auth_failed(cfg, "the broker's SCRAM answer carries no server signature")) from exc
    except (AuthenticationFailedError, SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
        raise ConfigError(_auth_failed(cfg, str(exc) or type(exc).__name__)) from exc


def _auth_failed(cfg: KafkaSettings, detail: str) -> str:
    sec = cfg.security
    return (
        f"Kafka at {cfg.bootstrap}: SASL {sec.sasl_mechanism or 'PLAIN'} authentication of user "
        f"{sec.sasl_username!r} failed: {detail} (check THINKROUTE_KAFKA__SASL_USERNAME, _PASSWORD, _MECHANISM)"
    )


async def tls_problem(cfg: KafkaSettings, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a TLS session with the first bootstrap server fails with the configured context (its certificate not
    trusted, the client's refused), or None (TLS not configured, the session holds, or the server cannot be
    reached at all: aiokafka's error says that)."""
    ctx = cfg.client_kwargs().get("ssl_context")
    if not isinstance(ctx, ssl.SSLContext):
        return None
    host, _, port = cfg.bootstrap.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        cafile = cfg.security.ssl_cafile
        trusted = f"the CA in {cafile}" if cafile else "the system's CAs (THINKROUTE_KAFKA__SSL_CAFILE is unset)"
        return f"TLS: the broker's certificate is not trusted by {trusted}: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"TLS handshake failed: {exc.reason or exc} (does the listener speak TLS?)"
    except (OSError, TimeoutError):
        return None
    given = cfg.security.ssl_certfile
    sent = f"the certificate in {given}" if given else "no certificate (THINKROUTE_KAFKA__SSL_CERTFILE is unset)"
    # TLS 1.3: a server that wants a client certificate refuses it after the handshake (an alert, then EOF);
    # a broker never ends a fresh connection unasked, so an end within ALERT_WAIT_S is that refusal
    try:
        async with asyncio.timeout(ALERT_WAIT_S):
            ended = await reader.read(1) == b""
    except ssl.SSLError as exc:
        return f"TLS: the broker refused the client, which sent {sent}: {exc.reason or exc}"
    except (OSError, TimeoutError):
        ended = False
    finally:
        writer.close()
    return f"TLS: the broker ended the session after the handshake; the client sent {sent}" if ended else None
