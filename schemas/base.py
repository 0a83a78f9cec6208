"""Shared model configuration, the identifier limits every path applies, and one way to word a refusal."""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

CUSTOM_ID_MAX_CHARS: Final = 512
"""A request's ``custom_id`` (and a prompt line's ``id``): the batch-file reader and the router's intake alike."""
JOB_ID_MAX_CHARS: Final = 128
REQUEST_ID_MAX_CHARS: Final = JOB_ID_MAX_CHARS + 1 + CUSTOM_ID_MAX_CHARS  # ``{job_id}/{custom_id}``


class Strict(BaseModel):
    """Base of every wire/store model: unknown fields are an error, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_number(value: Any) -> Any:
    """Refuse a JSON number where an id string belongs, saying why (pydantic never turns numbers into strings)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        message = 'must be a string, as OpenAI\'s Batch API requires: write "{value}", not {value}'
        raise PydanticCustomError("id_type", message, {"value": value})
    return value


CustomId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=CUSTOM_ID_MAX_CHARS,
        description="the caller's id of the request, echoed in its result; a string (a number is refused)",
    ),
    BeforeValidator(_no_number),
]


def describe(exc: ValidationError, most: int = 3) -> str:
    """The first ``most`` errors of ``exc`` as ``where: what``, ``;``-separated (a line error, a dead letter's reason).

    The location is the field's path in the input. Pydantic's own additions are left out of it: union members
    (``str``, ``list[...]``) and a tagged union's tag, which repeats the field it selects (``content.0.text.text``
    is ``content.0.text``). Of a union's failed members, a type mismatch at a place where another member
    failed deeper is left out too (content that is a list of parts is not also "not a valid string").
    """
    errors = [(_where(e["loc"]), e) for e in exc.errors(include_url=False)]
    parts: list[str] = []
    for loc, e in errors:
        if e["type"].endswith("_type") and any(len(o) > len(loc) and o[: len(loc)] == loc for o, _ in errors):
            continue
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        part = f"{'.'.join(loc)}: {msg}" if loc else msg
        if part not in parts:
            parts.append(part)
        if len(parts) == most:
            break
    return "; ".join(parts)


def _where(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for p in loc:
        segment = str(p)
        if isinstance(p, str) and ("[" in segment or segment in _UNION_MEMBERS):
            continue
        if out and segment == out[-1] and isinstance(p, str):
            continue
        out.append(segment)
    return tuple(out)


_UNION_MEMBERS: Final = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})
