"""Every Lua script and every multi-key command of the store stays in one hash slot (a Redis Cluster runs them
only so): each store call is made against a recording fake client, and the keys of each script call (and of
each MGET, DEL, ... ) must share one slot. Every script the store registers must be called here at least once,
so a new script cannot escape the check; and no script may build a key itself (all it touches is in KEYS)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any, cast

from redis.asyncio import Redis
from redis.crc import key_slot

from schemas.chat import ChatBody
from schemas.messages import AttemptSummary, PromptMessage
from schemas.records import JobMeta
from tests.factories import batch_meta, explored_pair, route_decision
from workers.store import lua, lua_lifecycle
from workers.store.files import _PAGE_LUA, FileIndex
from workers.store.integrity import request_id
from workers.store.jobstore import Store

JOB = "job-1a2b3c4d5e6f"
# replies that make each store call go its whole way (keyed by a line of the script's source)
REPLIES: dict[str, Any] = {
    lua_lifecycle.FAIL: [[f"{JOB}/1".encode()], [f"{JOB}/2".encode()], [f"{JOB}/3".encode()]],
    lua_lifecycle.STOP: b"stopping",
    lua_lifecycle.START: b"running",
    lua_lifecycle.SETTLE: b"cancelled",
    lua_lifecycle.OWNER_PAGE: [1, b"a"],
    lua.ADMIT: [b"unknown_job"],
    _PAGE_LUA: [],
}
MULTI_KEY = {"mget", "delete", "sdiffstore", "sunionstore", "exists"}  # commands of several keys, if ever sent


def slot(key: str) -> int:
    return key_slot(key.encode())


class Script:
    def __init__(self, owner: Fake, source: str) -> None:
        self.owner, self.source = owner, source

    async def __call__(self, keys: list[str] | None = None, args: Iterable[Any] | None = None) -> Any:
        self.owner.script_calls.append((self.source, list(keys or [])))
        return REPLIES.get(self.source, 1)


class Pipe:
    def __init__(self, owner: Fake) -> None:
        self.owner = owner

    async def __aenter__(self) -> Pipe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> Pipe:
            self.owner.record(name, args)
            return self

        return queue

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return [{}, 0, 0]  # what ``totals`` reads; the others ignore it


class Fake:
    """A client that records the keys of every script call and command, and answers plausibly."""

    def __init__(self) -> None:
        self.registered: set[str] = set()
        self.script_calls: list[tuple[str, list[str]]] = []
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def register_script(self, source: str) -> Script:
        self.registered.add(source)
        return Script(self, source)

    def pipeline(self, transaction: bool = True) -> Pipe:
        return Pipe(self)

    def record(self, name: str, args: tuple[Any, ...]) -> None:
        self.commands.append((name, args))

    def __getattr__(self, name: str) -> Any:
        async def command(*args: Any, **kwargs: Any) -> Any:
            self.record(name, args)
            return {"getdel": None, "mget": [], "hmget": [None] * 20}.get(name, 1)

        return command


def prompt() -> PromptMessage:
    body = ChatBody.model_validate({"messages": [{"role": "user", "content": "2+2?"}]})
    return PromptMessage(
        request_id=request_id(JOB, "1"), job_id=JOB, custom_id="1", line=1, body=body, submitted_at=1.0, mac="0" * 64
    )


async def every_store_call(store: Store, files: FileIndex) -> None:
    meta = JobMeta(job_id=JOB, total=3, source="t", submitted_at=time.time())
    ids = [f"{JOB}/{i}" for i in (1, 2, 3)]
    await store.register_job(meta, ids, b"s" * 32)
    await store.renew_lease(JOB)
    await store.start_job(JOB)
    await store.fail_job(JOB, "why")
    batch = batch_meta(JOB)
    await store.create_batch(batch, 60.0)
    await store.register_ids(JOB, ids)
    await store.begin_submit(JOB, batch, b"s" * 32, 60.0)
    await store.fail_validation(JOB, "bad", [])
    await store.stop_job(JOB, "cancelled", 300.0)
    await store.skip(prompt())
    await store.settle_overdue(JOB)
    await store.mark_finalized(JOB, "file-out", None)
    await store.owner_batches("alice", None, 10)
    await store.admit(prompt())
    result, exploration = explored_pair(1, "math", "direct", (5, None, None), (7, None, None), job=JOB)
    await store.write_result(result)
    attempt = AttemptSummary(route=route_decision("direct"), model="m", confidence=0.1, threshold=0.5)
    await store.write_escalation(JOB, result.request_id, attempt)
    await store.write_exploration(exploration)
    await store.totals(JOB)
    await store.results_of(JOB, ids)
    await files.list("alice")


async def test_every_script_and_multi_key_command_stays_in_one_slot() -> None:
    fake = Fake()
    client = cast(Redis, fake)
    store, files = Store(client), FileIndex(client)
    await every_store_call(store, files)
    assert fake.registered == {source for source, _ in fake.script_calls}, "a registered script is not called here"
    for source, keys in fake.script_calls:
        assert keys, f"a script without KEYS: {source[:80]!r}"
        assert len({slot(k) for k in keys}) == 1, f"script over several slots: {keys}"
    job_calls = [keys for _, keys in fake.script_calls if any(JOB in k for k in keys)]
    assert all(all(f"{{{JOB}}}" in k for k in keys) for keys in job_calls)  # the job's hash tag on each key
    multi = [(name, args) for name, args in fake.commands if name in MULTI_KEY]
    assert {name for name, _ in multi} >= {"mget", "delete"}  # what fail_job and results_of send
    for name, args in multi:
        keys = [str(k) for k in (args[0] if name == "mget" else args)]
        assert len({slot(k) for k in keys}) == 1, f"{name} over several slots: {keys}"


SCRIPTS = [v for m in (lua, lua_lifecycle) for k, v in vars(m).items() if k.isupper() and isinstance(v, str)]


def test_no_script_builds_a_key_of_its_own() -> None:
    """A key named inside Lua would not be declared in KEYS: a cluster cannot route it (or check its slot)."""
    assert len(SCRIPTS) >= 15
    for source in [*SCRIPTS, _PAGE_LUA]:
        assert "tr:" not in source
        for call in re.finditer(r"redis\.call\('(\w+)', ([^,)]+)", source):
            command, first = call.groups()
            if command.upper() in ("TIME",):
                continue
            assert re.fullmatch(r"KEYS\[\d+\]|meta|ids|done|inflight|stopped|totals|explored", first) or (
                first.startswith("shadow and KEYS")
            ), f"{command} on {first!r}: not a declared key"
