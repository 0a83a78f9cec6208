"""``python -m schemas``: regenerate the JSON Schema files in ``schemas/json`` and ``schemas/asyncapi.json``."""

from __future__ import annotations

import sys

from schemas import asyncapi
from schemas.jsonschema import write_all

if __name__ == "__main__":
    for path in [*write_all(), asyncapi.write()]:
        print(path)
    sys.exit(0)
