"""Batch ids: ``batch_<24 hex>`` (96 random bits, as OpenAI's look). File ids are ``workers.files.ids``'."""

from __future__ import annotations

import secrets


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)
