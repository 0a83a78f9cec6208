"""``thinkroute run``'s results file: written whole or in part, merged with an earlier one (``--skip-done``).

A results line is *done* when the request was answered (``response`` with a status below 400, no
``error``); failed requests are run again. The file is written atomically, in the input file's order; the
custom ids that have no line yet are listed in ``OUTPUT.missing.txt``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.errors import InvalidInput
from workers.store.jobstore import Store
from workers.submit.batchfile import InputRequest
from workers.submit.output import output_line


@dataclass
class Written:
    path: Path
    lines: int
    missing: list[str] = field(default_factory=list)
    missing_path: Path | None = None


def check_writable(path: Path) -> None:
    """Fail now (exit 2) if results cannot be written to ``path``, before a job is submitted: its directory
    must exist and take a new file (a file is created and removed there), and ``path`` must not be a
    directory."""
    parent = path.parent
    if path.is_dir():
        raise InvalidInput(f"cannot write results to {path}: it is a directory")
    if not parent.is_dir():
        raise InvalidInput(f"cannot write results to {path}: no directory {parent}")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot write results to {path}: {exc.strerror or exc}") from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInput(f"cannot write results to {path}: not writable")


def is_done(line: dict[str, Any]) -> bool:
    response = line.get("response")
    return line.get("error") is None and isinstance(response, dict) and int(response.get("status_code", 0)) < 400


def read_done(path: Path) -> dict[str, str]:
    """custom_id -> its line, for the done requests of an earlier results file (exit 2 on a bad line)."""
    done: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            custom_id = line["custom_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path}: line {number}: not a results line ({exc})") from exc
        if isinstance(line, dict) and is_done(line):
            done[str(custom_id)] = raw
    return done


async def write_output(
    store: Store | None, job_id: str | None, requests: Sequence[InputRequest], path: Path, earlier: dict[str, str]
) -> Written:
    """The job's results (none if ``job_id`` is None) and the ``earlier`` done lines, in the order of
    ``requests`` (the whole input file), written to ``path``; the ids with neither are listed, beside it."""
    new: dict[str, str] = {}
    if store is not None and job_id is not None:
        async for result in store.results(job_id):
            new[result.custom_id] = json.dumps(output_line(result).model_dump(mode="json"), ensure_ascii=False)
    lines: list[str] = []
    missing: list[str] = []
    for req in requests:
        line = new.get(req.custom_id) or earlier.get(req.custom_id)
        if line is None:
            missing.append(req.custom_id)
        else:
            lines.append(line)
    known = {req.custom_id for req in requests}
    lines += [line for cid, line in earlier.items() if cid not in known]  # never drop an answer
    missing_path = path.with_name(path.name + ".missing.txt")
    await asyncio.to_thread(_write, path, lines, missing_path, missing)
    return Written(path, len(lines), missing, missing_path if missing else None)


def _write(path: Path, lines: list[str], missing_path: Path, missing: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    tmp.replace(path)
    if missing:
        missing_path.write_text("".join(cid + "\n" for cid in missing), encoding="utf-8")
    else:
        missing_path.unlink(missing_ok=True)
