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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.errors import InvalidInput
from workers.store.integrity import request_id
from workers.store.jobstore import Store
from workers.submit.output import ORDER_CHUNK, encode_line, in_order, write_lines


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
    store: Store | None,
    job_id: str | None,
    path: Path,
    earlier: dict[str, str],
    order: Sequence[str] | None = None,
) -> Written:
    """The job's results (none if ``job_id`` is None) and the ``earlier`` done lines, in input order, written to
    ``path`` as they are read (a chunk of results in memory at a time); the ids with neither are listed, beside
    it. ``order``: the input file's custom ids in order (``--skip-done``: the job has only some of them); None:
    the job's own order list in Redis is the input order."""
    missing: list[str] = []

    async def lines() -> AsyncIterator[list[str]]:
        async for cids, new in _chunks(store, job_id, earlier, order):
            out: list[str] = []
            for cid in cids:
                line = new.get(cid) or earlier.get(cid)
                if line is None:
                    missing.append(cid)
                else:
                    out.append(line + "\n")
            yield out
        known = set(order) if order is not None else set()
        yield [line + "\n" for cid, line in earlier.items() if cid not in known]  # never drop an answer

    count = await write_lines(path, lines())
    missing_path = path.with_name(path.name + ".missing.txt")
    await asyncio.to_thread(_write_missing, missing_path, missing)
    return Written(path, count, missing, missing_path if missing else None)


async def _chunks(
    store: Store | None, job_id: str | None, earlier: dict[str, str], order: Sequence[str] | None
) -> AsyncIterator[tuple[Sequence[str], dict[str, str]]]:
    """Custom ids in input order, a chunk at a time, with the output lines of the job's results among them."""
    if order is None:
        if store is None or job_id is None:
            return
        prefix = f"{job_id}/"
        async for ids, results in in_order(store, job_id):
            yield [rid.removeprefix(prefix) for rid in ids], {r.custom_id: encode_line(r) for r in results.values()}
        return
    for i in range(0, len(order), ORDER_CHUNK):
        cids = order[i : i + ORDER_CHUNK]
        new: dict[str, str] = {}
        if store is not None and job_id is not None:
            wanted = [request_id(job_id, cid) for cid in cids if cid not in earlier]
            new = {r.custom_id: encode_line(r) for r in await store.results_of(job_id, wanted)}
        yield cids, new


def _write_missing(missing_path: Path, missing: list[str]) -> None:
    if missing:
        missing_path.write_text("".join(cid + "\n" for cid in missing), encoding="utf-8")
    else:
        missing_path.unlink(missing_ok=True)
