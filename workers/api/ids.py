"""Ids of the API's objects: ``file-<24 hex>`` and ``batch_<24 hex>`` (96 random bits each, as OpenAI's look).

``new_file_id`` is ours until ``workers.files`` has its own helper (the files branch adds one)."""

from __future__ import annotations

import secrets


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)
