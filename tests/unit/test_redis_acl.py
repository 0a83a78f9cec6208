"""The embedded Redis's ACL allows every command workers/ sends, and its configuration keeps secrets and
dangerous defaults out."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from workers.local.redis_conf import COMMANDS, CONNECTION, REDIS_USER, acl_rules, redis_config, write_private

ROOT = Path(__file__).resolve().parents[2]
# redis-py methods whose command is not their name in upper case
METHOD_COMMAND = {"sscan_iter": "sscan", "delete": "del"}
NOT_COMMANDS = {"call", "execute", "pipeline", "register_script", "aclose", "close", "get_default_node"}
# ``pipe.execute_command("EVALSHA", ...)``: a cluster pipeline's script call (evalsha is in the list)
NOT_COMMANDS |= {"execute_command"}
CLIENT = re.compile(r"\b(?:self\.redis|redis|pipe)\.([a-z_]+)\(")
LUA = re.compile(r"redis\.call\('([A-Za-z]+)'")


def commands_in_code() -> dict[str, set[str]]:
    """command -> the files of workers/ that send it (redis-py calls on a client or pipeline, and Lua)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "workers").rglob("*.py"):
        text = path.read_text()
        if "redis" not in text:
            continue
        calls = [m.group(1) for m in CLIENT.finditer(text)]
        calls = [METHOD_COMMAND.get(c, c) for c in calls if c not in NOT_COMMANDS]
        calls += [m.group(1).lower() for m in LUA.finditer(text)]
        for command in calls:
            if not command.startswith("_"):
                found.setdefault(command, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_redis_command_of_workers_is_allowed() -> None:
    found = commands_in_code()
    assert {"hincrby", "sadd", "evalsha", "sscan", "mget", "zrange"} <= set(found)  # the scan finds them
    allowed = {c.split("|")[0] for c in (*COMMANDS, *CONNECTION)}
    missing = {c: sorted(files) for c, files in found.items() if c not in allowed}
    assert not missing, f"add these to workers/local/redis_conf.py COMMANDS: {missing}"


def test_the_acl_starts_from_nothing_and_the_default_user_is_off(tmp_path: Path) -> None:
    rules = acl_rules("pw")
    assert rules.startswith("on >pw resetkeys ~tr:* resetchannels -@all +")
    for dangerous in ("flushall", "shutdown", "keys", "config", "eval ", "debug", "acl", "monitor", "+@"):
        assert f"+{dangerous}" not in rules
    conf = redis_config(6400, tmp_path, user=REDIS_USER, password="pw")
    assert "user default off\n" in conf and f"user {REDIS_USER} {rules}\n" in conf
    assert "bind 127.0.0.1\n" in conf and 'save ""\n' in conf and "requirepass" not in conf
    assert "requirepass pw\n" in redis_config(6400, tmp_path, password="pw")
    persist = redis_config(6400, tmp_path, persist=True)
    assert "appendfsync always\n" in persist and "save" not in persist


def test_config_quotes_its_directory_and_is_written_0600(tmp_path: Path) -> None:
    odd = tmp_path / 'a "quoted" dir'
    assert f'dir "{tmp_path}/a \\"quoted\\" dir"\n' in redis_config(1, odd)
    target = tmp_path / "redis.conf"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "secret\n")
    assert target.read_text() == "secret\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
