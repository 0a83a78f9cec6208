"""``python -m schemas``: regenerate the JSON Schema files in ``schemas/json``, ``schemas/asyncapi.json`` and
``schemas/openapi.json``."""

from __future__ import annotations

import sys

from schemas import asyncapi, openapi
from schemas.jsonschema import write_all

if __name__ == "__main__":
    for path in [*write_all(), asyncapi.write(), openapi.write()]:
        print(path)
    sys.exit(0)
