"""API keys of ``thinkroute serve``: made here, kept as SHA-256 hashes (keys are 256-bit random tokens, so a
plain hash is enough: nothing to brute-force), read from a keys file of ``<owner> <sha256 hex>`` lines."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from workers.errors import ConfigError

KEY_PREFIX = "tr-"
LOCAL_OWNER = "local"  # the embedded stack's one owner


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write_keys_file(path: Path, entries: dict[str, str]) -> None:
    """Write ``{owner: key hash}`` as a keys file, 0600 from its creation."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{owner} {digest}\n" for owner, digest in entries.items())


def read_keys_file(path: Path) -> dict[str, str]:
    """``{sha256 hex: owner}`` from a keys file (blank lines and ``#`` comments skipped); ConfigError naming the
    line that is not ``<owner> <64 hex>``."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the API keys file {path}: {exc.strerror or exc}") from exc
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) != 64 or any(c not in "0123456789abcdef" for c in parts[1]):
            raise ConfigError(f"{path}:{n}: expected `<owner> <sha256 hex of the key>`")
        out[parts[1]] = parts[0]
    return out
