"""File ids (``file-<24 hex>``, as OpenAI's look) and the storage keys the file stores accept."""

from __future__ import annotations

import re
import secrets

_KEY = re.compile(r"[A-Za-z0-9._-]+")


def new_file_id() -> str:
    """A new file id: ``file-`` and 96 random bits in hex."""
    return "file-" + secrets.token_hex(12)


def check_key(key: str) -> str:
    """``key`` if a file store may use it as an object name: letters, digits, ``.``, ``_``, ``-``, and not
    starting with a dot (``.`` and ``..`` would leave the directory; the local store's temporary files start
    with one). ValueError otherwise."""
    if not _KEY.fullmatch(key) or key.startswith("."):
        raise ValueError(f"bad file storage key {key!r}: [A-Za-z0-9._-]+ not starting with a dot")
    return key
