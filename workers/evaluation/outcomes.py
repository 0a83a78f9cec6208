"""Outcome records (`schemas.outcomes.OutcomeRecord`) on disk and as the arrays an evaluation needs.

Files are JSONL, plain or xz-compressed (by the name's ``.xz`` suffix or the xz magic bytes); a line that is
not a valid record is an `InvalidInput` naming ``file:line`` and why. A record's prompt text is what the
pipeline would send: ``question`` (+ ``options``/``choices``) rendered by
`workers.data.prompts.format_mcq_prompt`, a batch ``body`` read by `workers.router.text.prompt_text`, or
``prompt`` as is.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from pydantic import ValidationError

from schemas.outcomes import OutcomeRecord
from workers.data.prompts import format_mcq_prompt
from workers.errors import InvalidInput
from workers.evaluation.curve import Floats
from workers.router.text import prompt_text

XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"


def _open_read(path: Path) -> IO[str]:
    with path.open("rb") as f:
        head = f.read(len(XZ_MAGIC))
    if head == XZ_MAGIC:
        return io.TextIOWrapper(lzma.open(path, "rb"), encoding="utf-8-sig")
    if head[:2] == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return path.open("r", encoding="utf-8-sig")


def _why(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


def parse_line(line: str, where: str) -> OutcomeRecord:
    """One JSONL line as a record; ``where`` (``file:line``) names it in the error."""
    try:
        return OutcomeRecord.model_validate_json(line)
    except ValidationError as exc:
        try:
            json.loads(line)
        except ValueError:
            raise InvalidInput(f"{where}: not JSON") from None
        raise InvalidInput(f"{where}: not an outcome record: {_why(exc)}") from None


def read_outcomes(path: str | Path) -> list[OutcomeRecord]:
    """Every record of a .jsonl file, plain, xz or gzip (by magic bytes; blank lines skipped)."""
    p = Path(path)
    try:
        f = _open_read(p)
    except OSError as exc:
        raise InvalidInput(f"cannot read records file {p}: {exc.strerror or exc}") from None
    out = []
    with f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    out.append(parse_line(line, f"{p}:{n}"))
        except (UnicodeDecodeError, lzma.LZMAError, gzip.BadGzipFile, EOFError) as exc:
            raise InvalidInput(f"{p}: cannot be decoded: {exc}") from None
    if not out:
        raise InvalidInput(f"{p}: no records")
    return out


def write_outcomes(path: str | Path, records: Iterable[OutcomeRecord]) -> int:
    """Write records as JSONL (xz-compressed when the name ends in .xz); returns how many."""
    p = Path(path)
    n = 0
    opener = lzma.open if p.suffix == ".xz" else open
    try:
        with opener(p, "wt", encoding="utf-8") as f:
            for r in records:
                f.write(r.model_dump_json(exclude_none=True) + "\n")
                n += 1
    except OSError as exc:
        raise InvalidInput(f"cannot write records file {p}: {exc.strerror or exc}") from None
    return n


def record_text(record: OutcomeRecord) -> str:
    """The prompt text as the pipeline sends it (and the classifier reads it)."""
    if record.question is not None:
        return format_mcq_prompt(record.question, record.options or record.choices or [])
    if record.body is not None:
        return prompt_text(record.body)
    assert record.prompt is not None  # the schema requires exactly one of the three
    return record.prompt


def arm_names(records: Sequence[OutcomeRecord]) -> dict[str, int]:
    """Each arm and how many records have it (most common first)."""
    counts: dict[str, int] = {}
    for r in records:
        for arm in r.outcomes:
            counts[arm] = counts.get(arm, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class Arms:
    """Two arms' outcomes on the records that have both (``index``: their positions in the input)."""

    cheap_name: str
    expensive_name: str
    index: list[int]
    cheap: Floats
    expensive: Floats
    cheap_tokens: Floats | None  # None unless every kept record has tokens for both arms
    expensive_tokens: Floats | None
    skipped: int  # records missing one of the arms

    @property
    def n(self) -> int:
        return len(self.index)


def arms(records: Sequence[OutcomeRecord], cheap: str, expensive: str) -> Arms:
    """Correctness (and tokens when both arms have them on every kept record) of ``cheap`` and ``expensive``."""
    if cheap == expensive:
        raise InvalidInput(f"--cheap and --expensive are the same arm: {cheap!r}")
    known = arm_names(records)
    for name in (cheap, expensive):
        if name not in known:
            raise InvalidInput(f"no record has arm {name!r}; arms: {', '.join(known) or 'none'}")
    index = [i for i, r in enumerate(records) if cheap in r.outcomes and expensive in r.outcomes]
    if not index:
        raise InvalidInput(f"no record has both arms {cheap!r} and {expensive!r}")
    kept = [records[i] for i in index]
    c = np.array([r.outcomes[cheap].correct for r in kept], dtype=np.float64)
    e = np.array([r.outcomes[expensive].correct for r in kept], dtype=np.float64)
    ct = [r.outcomes[cheap].tokens for r in kept]
    et = [r.outcomes[expensive].tokens for r in kept]
    has_tokens = all(t is not None for t in ct) and all(t is not None for t in et)
    return Arms(
        cheap,
        expensive,
        index,
        c,
        e,
        np.array(ct, dtype=np.float64) if has_tokens else None,
        np.array(et, dtype=np.float64) if has_tokens else None,
        len(records) - len(index),
    )
