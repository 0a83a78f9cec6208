"""Bad input, generated (seeded): thousands of broken prompt messages and batch-file lines.

In the pipeline every bad message goes to the dead-letter topic with its reason and original bytes, no
worker crashes and every good message is answered once. At the edge, `thinkroute submit` names each bad
line with its number and submits the good ones only when asked to.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from loadgen.procs import settings_env
from schemas.batch import ChatBody, ChatMessage
from schemas.messages import DeadLetter, PromptMessage, RoutedMessage
from schemas.records import JobMeta
from tests.helpers import ROOT
from tests.integration.helpers import produce, read_topic, register, running
from workers.inference.serve import serve_inference
from workers.kafka.clients import ensure_topics, kafka_config
from workers.router.serve import serve_router
from workers.settings import Settings
from workers.store.integrity import sign
from workers.store.jobstore import Store, done_key, ids_key
from workers.submit.batchfile import read_batch
from workers.submit.jobs import wait_for_job

pytestmark = pytest.mark.integration
CAP = 4000


def good_prompt(job: str, i: int, secret: bytes | None = None) -> PromptMessage:
    body = ChatBody(messages=[ChatMessage(role="user", content=f"Question {i}: what is {i} + {i}?")], max_tokens=64)
    msg = PromptMessage(
        request_id=f"{job}/{i}", job_id=job, custom_id=str(i), line=i + 1, body=body, submitted_at=time.time()
    )
    return sign(msg, secret) if secret is not None else msg


def good_message(job: str, i: int, secret: bytes | None = None) -> bytes:
    return good_prompt(job, i, secret).model_dump_json().encode()


def bad_message(rng: random.Random, job: str, i: int) -> tuple[str, bytes]:
    valid = json.loads(good_message(job, 100_000 + i))
    kind = rng.choice(
        [
            "bytes",
            "json-array",
            "missing",
            "extra",
            "version",
            "empty",
            "huge",
            "utf8",
            "types",
            "no-messages",
            "max-tokens",
        ]
    )
    if kind == "bytes":
        return kind, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    if kind == "json-array":
        return kind, json.dumps([valid]).encode()
    if kind == "missing":
        valid.pop(rng.choice(["request_id", "job_id", "body", "line", "submitted_at"]))
    elif kind == "extra":
        valid["surprise"] = 1
    elif kind == "version":
        valid["v"] = rng.choice([0, 2, "1", None])
    elif kind == "empty":
        return kind, b""
    elif kind == "huge":
        valid["body"]["messages"][0]["content"] = "x" * (CAP + rng.randint(1, 5000))
    elif kind == "utf8":
        return kind, json.dumps(valid).encode()[:-2] + b'\xff\xfe"}'
    elif kind == "types":
        valid["line"] = "seven"
    elif kind == "no-messages":
        valid["body"]["messages"] = []
    elif kind == "max-tokens":
        valid["body"]["max_tokens"] = 10**9
    return kind, json.dumps(valid).encode()


async def test_fuzzed_prompt_topic(settings: Settings, artifact: Path, redis: Redis, unique: str) -> None:
    s = settings.model_copy(update={"max_prompt_chars": CAP, "max_tokens": 100_000})
    kc, t = kafka_config(s), s.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], s.partitions)
    rng = random.Random(1123)
    job = f"fuzz-{unique}"
    n_good, n_bad = 300, 1700
    store = Store(redis)
    meta = JobMeta(job_id=job, total=n_good, source="fuzz", submitted_at=time.time())
    secret = await register(store, meta, [f"{job}/{i}" for i in range(n_good)])
    items: list[tuple[bytes | None, bytes]] = []
    bad_values: list[bytes] = []
    for i in range(n_good):
        items.append((f"{job}/{i}".encode(), good_message(job, i, secret)))
    for i in range(n_good // 10):  # duplicates of good messages: answered once
        items.append((f"{job}/{i}".encode(), good_message(job, i, secret)))
    for i in range(n_bad):
        _, value = bad_message(rng, job, i)
        items.append((rng.choice([None, b"k"]), value))
        bad_values.append(value)
    rng.shuffle(items)
    async with running(lambda stop: serve_router(s, stop, artifact), lambda stop: serve_inference(s, stop)) as w:
        await produce(kc.bootstrap, t.prompts, items)
        totals = await wait_for_job(
            store, JobMeta(job_id=job, total=n_good, source="fuzz", submitted_at=0), check=w.check, timeout_s=240
        )
        dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, n_bad, 120)]
        w.check()
    assert (totals.completed, totals.failed) == (n_good, 0)
    assert len(dead) == n_bad
    assert sorted(base64.b64decode(d.value_b64) for d in dead) == sorted(bad_values)
    assert all(d.stage == "router" and d.reason and d.topic == t.prompts for d in dead)
    reasons = " | ".join(d.reason for d in dead)
    assert "over the limit of 4000" in reasons and "max_tokens 1000000000 is over the limit" in reasons
    await assert_only_submitted_lines_count(store, {job: [good_prompt(job, i) for i in range(n_good)]})


async def assert_only_submitted_lines_count(store: Store, submitted: dict[str, list[PromptMessage]]) -> None:
    """The invariant: completed + failed <= total, and every result belongs to a submitted line."""
    for job, prompts in submitted.items():
        meta = await store.job_meta(job)
        totals = await store.totals(job)
        assert meta is not None and totals.completed + totals.failed <= meta.total == len(prompts)
        lines = {(p.request_id, p.custom_id, p.line) for p in prompts}
        results = [r async for r in store.results(job)]
        assert len(results) == totals.completed + totals.failed
        assert all((r.request_id, r.custom_id, r.line) in lines and r.job_id == job for r in results)
        assert await store.redis.sdiff([done_key(job), ids_key(job)]) == set()  # nothing done that was not registered


FORGERIES = (
    "new-custom-id",
    "request-id",
    "unknown-job",
    "other-job",
    "body",
    "line",
    "submitted-at",
    "mac-random",
    "mac-swapped",
    "unsigned",
)


def forge(rng: random.Random, kind: str, p: PromptMessage, other: PromptMessage, job_b: str, i: int) -> PromptMessage:
    """A valid prompt message (it passes the router) that its job's submitter did not send."""
    job = p.job_id
    if kind == "new-custom-id":
        cid = f"x{i}-{rng.randrange(10**6)}"
        return p.model_copy(update={"custom_id": cid, "request_id": f"{job}/{cid}"})
    if kind == "request-id":
        return p.model_copy(update={"request_id": other.request_id})
    if kind == "unknown-job":
        ghost = f"ghost-{rng.randrange(10**9)}"
        return p.model_copy(update={"job_id": ghost, "request_id": f"{ghost}/{p.custom_id}"})
    if kind == "other-job":  # a registered id of another job, this job's MAC
        return p.model_copy(update={"job_id": job_b, "request_id": f"{job_b}/{p.custom_id}"})
    if kind == "body":
        text = "".join(rng.choice("abcdefghij ?") for _ in range(rng.randint(1, 80)))
        return p.model_copy(
            update={"body": p.body.model_copy(update={"messages": [ChatMessage(role="user", content=text)]})}
        )
    if kind == "line":
        return p.model_copy(update={"line": p.line + rng.randint(1, 1000)})
    if kind == "submitted-at":
        return p.model_copy(update={"submitted_at": p.submitted_at - rng.uniform(1, 10**6)})
    if kind == "mac-random":
        return p.model_copy(update={"mac": f"{rng.getrandbits(256):064x}"})
    if kind == "mac-swapped":
        return p.model_copy(update={"mac": other.mac})
    return p.model_copy(update={"mac": None})


async def test_fuzzed_forgeries_count_toward_no_job(
    settings: Settings, artifact: Path, redis: Redis, unique: str
) -> None:
    """Valid prompt messages for real jobs that their submitters did not send: each is dead-lettered by the
    inference worker, and both jobs count exactly their own lines."""
    kc, t = kafka_config(settings), settings.topics
    await ensure_topics(kc, [t.prompts, t.reasoning, t.direct, t.dead], settings.partitions)
    rng = random.Random(2024)
    store = Store(redis)
    jobs = {f"fz-a-{unique}": 60, f"fz-b-{unique}": 30}
    submitted: dict[str, list[PromptMessage]] = {}
    for job, n in jobs.items():
        secret = await register(
            store,
            JobMeta(job_id=job, total=n, source="fuzz", submitted_at=time.time()),
            [f"{job}/{i}" for i in range(n)],
        )
        submitted[job] = [good_prompt(job, i, secret) for i in range(n)]
    job_a, job_b = jobs
    a, n_forged = submitted[job_a], 400
    forged = []
    for i in range(n_forged):
        x = rng.randrange(len(a))
        y = (x + rng.randrange(1, len(a))) % len(a)  # another line of the job
        forged.append(forge(rng, FORGERIES[i % len(FORGERIES)], a[x], a[y], job_b, i))
    items = [(p.request_id.encode(), p.model_dump_json().encode()) for p in [*forged, *a, *submitted[job_b]]]
    rng.shuffle(items)
    async with running(
        lambda stop: serve_router(settings, stop, artifact), lambda stop: serve_inference(settings, stop)
    ) as w:
        await produce(kc.bootstrap, t.prompts, items)
        for job, n in jobs.items():
            meta = JobMeta(job_id=job, total=n, source="fuzz", submitted_at=0)
            totals = await wait_for_job(store, meta, check=w.check, timeout_s=240)
            assert (totals.completed, totals.failed) == (n, 0)
        dead = [DeadLetter.model_validate_json(r.value) for r in await read_topic(kc.bootstrap, t.dead, n_forged, 120)]
        w.check()
    assert all(d.stage == "inference" and d.error == "RejectedRequest" for d in dead)
    letters = [RoutedMessage.model_validate_json(base64.b64decode(d.value_b64)).prompt for d in dead]
    assert sorted(p.model_dump_json() for p in letters) == sorted(p.model_dump_json() for p in forged)
    verdicts = {d.reason.split(")")[0].removeprefix("rejected (") for d in dead}  # "rejected (<verdict>): why"
    assert verdicts == {"unregistered", "bad_request_id", "unknown_job", "bad_mac", "unsigned"}
    await assert_only_submitted_lines_count(store, submitted)


def fuzz_file(path: Path, rng: random.Random, n: int) -> tuple[set[int], set[int]]:
    good, bad = set(), set()
    used: set[str] = set()
    lines: list[bytes] = []
    for number in range(1, n + 1):
        roll = rng.random()
        if roll < 0.5:
            lines.append(json.dumps({"id": f"ok-{number}", "prompt": f"What is {number} squared?"}).encode())
            good.add(number)
            used.add(f"ok-{number}")
        elif roll < 0.6:
            # reuses the previous line's id: a duplicate if an accepted line already has it
            cid = f"ok-{number - 1}"
            lines.append(json.dumps({"id": cid, "prompt": "dup"}).encode())
            (bad if cid in used else good).add(number)
            used.add(cid)
        elif roll < 0.7:
            lines.append(b'{"id": "x", "prompt": "\xff\xfe"}')
            bad.add(number)
        elif roll < 0.8:
            lines.append(
                json.dumps(
                    {
                        "custom_id": f"c{number}",
                        "method": "POST",
                        "url": "/v1/embeddings",
                        "body": {"messages": [{"role": "user", "content": "x"}]},
                    }
                ).encode()
            )
            bad.add(number)
        elif roll < 0.9:
            lines.append(json.dumps({"id": f"big-{number}", "prompt": "y" * (CAP + 1)}).encode())
            bad.add(number)
        else:
            lines.append(b"#" + bytes(rng.getrandbits(7) | 0x20 for _ in range(rng.randint(1, 40))))
            bad.add(number)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return good, bad


def test_fuzzed_batch_files_are_rejected_line_by_line(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(77)
    path = tmp_path / "fuzz.jsonl"
    good, bad = fuzz_file(path, rng, 3000)
    ok, errors = read_batch(path, CAP)
    assert {r.line for r in ok} == good
    assert {e.line for e in errors} == bad
    assert all(str(e).startswith(f"line {e.line}: ") for e in errors)

    env = settings_env(settings, THINKROUTE_MAX_PROMPT_CHARS=str(CAP))
    env = {k: v for k, v in env.items() if k != "THINKROUTE_LLM_BASE_URL"} | {"PYTHONPATH": str(ROOT)}
    strict = subprocess.run(
        [sys.executable, "-m", "workers", "submit", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert strict.returncode == 2
    assert f"{len(bad)} invalid line(s)" in strict.stderr and "nothing submitted" in strict.stderr
    first_bad = min(bad)
    assert f"line {first_bad}: " in strict.stderr
    lenient = subprocess.run(
        [sys.executable, "-m", "workers", "submit", "--skip-invalid", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    job = lenient.stdout.strip()
    assert job.startswith("job-")
    status = subprocess.run(
        [sys.executable, "-m", "workers", "status", job, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert json.loads(status.stdout)["total"] == len(good)
