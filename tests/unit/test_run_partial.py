"""`thinkroute run`'s results file in part (the missing ids beside it) and merged (`--skip-done`), the check
that it can be written before a job starts, and the stack directories of killed runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.records import RequestResult, Usage
from tests.factories import route_decision
from workers.cli.partial import check_writable, read_done, write_output
from workers.errors import InvalidInput
from workers.local import workdir
from workers.submit.output import output_line


def result(custom_id: str, line: int, status: str = "completed") -> RequestResult:
    return RequestResult(
        request_id=f"job-1/{custom_id}",
        job_id="job-1",
        custom_id=custom_id,
        line=line,
        status=status,  # type: ignore[arg-type]
        route=route_decision(),
        model="m",
        usage=Usage(prompt_tokens=1, completion_tokens=2),
        response_body={"id": custom_id} if status == "completed" else None,
        http_status=200 if status == "completed" else None,
        error=None if status == "completed" else "timed out",
        error_code=None if status == "completed" else "timeout",
        attempts=1,
        llm_latency_s=0.1,
        latency_s=0.2,
        finished_at=0.0,
    )


class FakeStore:
    """The job's order list (``order``: its custom ids) and results, as ``Store`` reads them."""

    def __init__(self, results: list[RequestResult], order: list[str] | None = None) -> None:
        self._results = {r.custom_id: r for r in results}
        self._order = order or []

    async def request_ids_in_order(self, job_id: str, start: int, count: int) -> list[str]:
        return [f"{job_id}/{cid}" for cid in self._order[start : start + count]]

    async def results_of(self, job_id: str, request_ids: list[str], chunk: int = 500) -> list[RequestResult]:
        cids = [rid.removeprefix(f"{job_id}/") for rid in request_ids]
        return [self._results[c].model_copy(update={"request_id": f"{job_id}/{c}"}) for c in cids if c in self._results]


def line_of(r: RequestResult) -> str:
    return json.dumps(output_line(r).model_dump(mode="json"), ensure_ascii=False)


async def test_results_so_far_in_input_order_with_the_missing_ids_beside_them(tmp_path: Path) -> None:
    order = [f"r{i}" for i in range(5)]
    store = FakeStore([result("r3", 4), result("r0", 1), result("r1", 2, status="failed")], order)
    out = tmp_path / "out.jsonl"
    written = await write_output(store, "job-1", out, {})  # type: ignore[arg-type]
    assert [json.loads(x)["custom_id"] for x in out.read_text().splitlines()] == ["r0", "r1", "r3"]
    assert (written.lines, written.missing, written.missing_path) == (
        3,
        ["r2", "r4"],
        tmp_path / "out.jsonl.missing.txt",
    )
    assert (tmp_path / "out.jsonl.missing.txt").read_text() == "r2\nr4\n"
    # the same file completed later: the list of missing ids goes
    complete = FakeStore([result(f"r{i}", i + 1) for i in range(5)], order)
    written = await write_output(complete, "job-1", out, {})  # type: ignore[arg-type]
    assert (written.lines, written.missing, written.missing_path) == (5, [], None)
    assert not (tmp_path / "out.jsonl.missing.txt").exists()


async def test_skip_done_keeps_answered_lines_and_runs_failed_ones_again(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.jsonl"
    answered, failed = line_of(result("r0", 1)), line_of(result("r1", 2, status="failed"))
    http_error = json.loads(line_of(result("r2", 3)))
    http_error["response"]["status_code"] = 429
    other = line_of(result("gone", 9))  # an id the input file no longer has
    earlier.write_text("\n".join([answered, failed, json.dumps(http_error), other, ""]))
    done = read_done(earlier)
    assert set(done) == {"r0", "gone"}  # a failure, HTTP error or not, is not done
    store = FakeStore([result("r2", 3), result("r1", 2)], ["r1", "r2"])  # the job ran what was not done
    written = await write_output(store, "job-2", earlier, done, ["r0", "r1", "r2"])  # type: ignore[arg-type]
    lines = earlier.read_text().splitlines()
    assert lines[0] == answered and lines[3] == other  # kept byte for byte; nothing is dropped
    assert [json.loads(x)["custom_id"] for x in lines] == ["r0", "r1", "r2", "gone"]
    assert json.loads(lines[1])["error"] is None and written.missing == []


def test_a_results_file_that_is_not_one_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a", "response": null, "error": null}\n{not json\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl: line 2: not a results line"):
        read_done(bad)


def test_an_unwritable_output_is_refused_before_anything_runs(tmp_path: Path) -> None:
    check_writable(tmp_path / "new.jsonl")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    with pytest.raises(InvalidInput, match=f"cannot write results to {tmp_path}/nope/x.jsonl: no directory"):
        check_writable(tmp_path / "nope" / "x.jsonl")
    with pytest.raises(InvalidInput, match=f"cannot write results to {tmp_path}: it is a directory"):
        check_writable(tmp_path)
    if os.geteuid() != 0:  # root writes anywhere chmod says it may not
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InvalidInput, match="Permission denied"):
            check_writable(locked / "x.jsonl")


def test_stack_directories_of_dead_owners_are_removed_and_no_other(tmp_path: Path) -> None:
    mine = workdir.make_workdir()
    try:
        assert stat.S_IMODE(mine.stat().st_mode) == 0o700
        assert stat.S_IMODE((mine / workdir.OWNER).stat().st_mode) == 0o600
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        stale = tmp_path / f"{workdir.PREFIX}stale"
        stale.mkdir()
        (stale / workdir.OWNER).write_text(f"{dead.pid} {Path('/proc/self/stat').read_text().split()[21]}\n")
        reused = tmp_path / f"{workdir.PREFIX}reused"  # a live pid, but another start time: another process
        reused.mkdir()
        (reused / workdir.OWNER).write_text(f"{os.getpid()} 1\n")
        kept = tmp_path / f"{workdir.PREFIX}kept"  # kept for its logs: no owner
        kept.mkdir()
        live = tmp_path / f"{workdir.PREFIX}live"
        live.mkdir()
        (live / workdir.OWNER).write_text((mine / workdir.OWNER).read_text())
        assert sorted(workdir.clean_stale(tmp_path)) == sorted([stale, reused])
        assert kept.is_dir() and live.is_dir() and not stale.exists() and not reused.exists()
        workdir.disown(live)
        assert not workdir.owner_gone(live)
    finally:
        workdir.shutil.rmtree(mine)
