"""Bearer keys: configured as SHA-256 hashes (``ApiSettings.keys_file`` lines and ``ApiSettings.keys``), each
naming its owner. A presented key is hashed and the hash looked up: the server never holds a key, and the
lookup's time does not depend on how much of a key matches (only hashes are compared).

Missing and wrong keys get OpenAI's answers: 401, ``invalid_request_error``, the second with
``code: invalid_api_key``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from workers.api.problems import ApiError
from workers.errors import ConfigError
from workers.runtime.apikeys import key_hash, read_keys_file
from workers.settings import ApiSettings

MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY)."
)
INCORRECT = "Incorrect API key provided. Ask the server's operator for a key (`thinkroute api-key new --owner NAME`)."
HASH = re.compile(r"[0-9a-f]{64}")


class Keys:
    """``{sha256 hex of a key: owner}``."""

    def __init__(self, by_hash: Mapping[str, str]) -> None:
        self.by_hash = dict(by_hash)

    @classmethod
    def from_settings(cls, api: ApiSettings) -> Keys:
        """The keys file's and the setting's keys (ConfigError naming a malformed one)."""
        by_hash = read_keys_file(api.keys_file) if api.keys_file is not None else {}
        for digest, owner in api.keys.items():
            if not HASH.fullmatch(digest) or not owner or any(c.isspace() for c in owner):
                raise ConfigError(
                    'THINKROUTE_API__KEYS: expected {"<sha256 hex of the key>": "<owner>"}, got an entry '
                    f"with hash {digest[:12]!r}..."
                )
            by_hash[digest] = owner
        return cls(by_hash)

    def __len__(self) -> int:
        return len(self.by_hash)

    def owner(self, authorization: str | None) -> str:
        """The owner of the key in an ``Authorization`` header; ApiError 401 otherwise."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, MISSING)
        owner = self.by_hash.get(key_hash(token))
        if owner is None:
            raise ApiError(401, INCORRECT, code="invalid_api_key")
        return owner
