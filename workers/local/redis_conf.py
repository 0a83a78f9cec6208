"""The embedded Redis's configuration: its one user, and the only commands and keys that user may use.

Redis ACLs: the default user is off (a client without the password is refused, NOAUTH) and the ThinkRoute
user may run only the commands below, on keys under ``tr:`` (every key of `workers.store.jobstore`): no
SHUTDOWN, FLUSHALL, KEYS, CONFIG, DEBUG, MONITOR, ACL, ... (NOPERM). Commands a Lua script calls are checked
too, so the scripts' commands are listed. A new Redis call in workers/ must add its command here;
tests/unit/test_redis_acl.py finds the calls in the code and fails on one that is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

REDIS_USER = "thinkroute"
KEY_PATTERN = "tr:*"

# what redis-py sends (AUTH is always allowed): its health checks and, on connect, its library name
CONNECTION = ("ping", "client|setinfo")
# what redis-py's cluster client sends besides (THINKROUTE_REDIS_CLUSTER): the slot map, and the command table it
# finds keys with; a Redis Cluster with ACLs must allow them to ThinkRoute's user (the embedded stack is no cluster)
CLUSTER_CLIENT = ("cluster|slots", "command")
# what workers/ calls, directly or from the Lua scripts of workers/store/ (lua.py, lua_lifecycle.py)
COMMANDS = (
    # strings, sets, hashes, sorted sets
    "get",
    "set",
    "mget",
    "del",
    "exists",
    "type",
    "sadd",
    "sismember",
    "scard",
    "smembers",
    "sscan",
    "srem",
    "sdiffstore",
    "sunionstore",
    "hget",
    "hmget",
    "hset",
    "hdel",
    "hincrby",
    "hgetall",
    "zadd",
    "zcard",
    "zrange",
    "zrevrange",
    "zrevrank",
    # lists: a job's request ids in input order
    "rpush",
    "lrange",
    # scripts: redis-py's Script runs EVALSHA and loads the script on NOSCRIPT (pipelines check first)
    "evalsha",
    "script|load",
    "script|exists",
    "time",
    # the file index (workers/store/files.py): records, owners' sorted sets, their pages (in Lua)
    "getdel",
    "zscore",
    "zrem",
    "zrank",
    "zrevrank",
    "zrangebyscore",
    "zrevrangebyscore",
)


def acl_rules(password: str, cluster: bool = False) -> str:
    """The ACL rule line of the ThinkRoute user (starts from nothing: ``-@all``); ``cluster``: a cluster
    client's too (``CLUSTER_CLIENT``)."""
    allowed = " ".join(f"+{c}" for c in (*CONNECTION, *COMMANDS, *(CLUSTER_CLIENT if cluster else ())))
    return f"on >{password} resetkeys ~{KEY_PATTERN} resetchannels -@all {allowed}"


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def redis_config(
    port: int, workdir: Path, *, persist: bool = False, password: str | None = None, user: str | None = None
) -> str:
    """A redis.conf: loopback only, ``workdir`` as its directory; ``persist``: every write fsynced before it
    is acknowledged (even a SIGKILL loses nothing), else nothing is written to disk."""
    lines = [f"port {port}", "bind 127.0.0.1", "protected-mode yes", f"dir {_quoted(workdir)}"]
    if persist:
        lines += ["appendonly yes", "appendfsync always"]
    else:
        lines += ['save ""', "appendonly no"]
    if user:
        if not password:
            raise ValueError("a Redis user needs a password")
        lines += ["user default off", f"user {user} {acl_rules(password)}"]
    elif password:
        lines.append(f"requirepass {password}")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (0600 from its creation, never wider)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # an old tmp file kept its mode through O_TRUNC
    tmp.replace(path)
