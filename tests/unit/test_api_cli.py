"""``thinkroute api-key new`` (a key printed once, its hash appended 0600) and ``thinkroute serve``'s refusals
before it opens anything (no broker or Redis set, no key)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workers.api.auth import Keys
from workers.cli.app import app
from workers.runtime.apikeys import key_hash
from workers.settings import ApiSettings


@pytest.fixture(autouse=True)
def no_thinkroute_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("THINKROUTE_"):
            monkeypatch.delenv(var)


def test_a_new_key_is_printed_once_and_its_hash_appended(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"carol {key_hash('old')}", encoding="utf-8")  # no final newline
    path.chmod(0o644)
    first = CliRunner().invoke(app, ["api-key", "new", "--owner", "alice", "--keys-file", str(path)])
    second = CliRunner().invoke(app, ["api-key", "new", "--owner", "bob", "--keys-file", str(path), "--json"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    key_a = first.stdout.strip()
    key_b = json.loads(second.stdout)["key"]
    assert key_a.startswith("tr-") and key_b.startswith("tr-") and key_a != key_b
    assert json.loads(second.stdout)["sha256"] == key_hash(key_b)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [f"carol {key_hash('old')}", f"alice {key_hash(key_a)}", f"bob {key_hash(key_b)}"]
    keys = Keys.from_settings(ApiSettings(keys_file=path))
    assert keys.owner(f"Bearer {key_a}") == "alice" and keys.owner(f"Bearer {key_b}") == "bob"
    assert key_a not in path.read_text(encoding="utf-8")


def test_a_new_keys_file_is_made_0600(tmp_path: Path) -> None:
    path = tmp_path / "new-keys"
    result = CliRunner().invoke(app, ["api-key", "new", "--owner", "alice", "--keys-file", str(path)])
    assert result.exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == f"alice {key_hash(result.stdout.strip())}\n"


@pytest.mark.parametrize("owner", ["", "a b", "x" * 65, "-lead"])
def test_a_bad_owner_is_refused(owner: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["api-key", "new", "--owner", owner, "--keys-file", str(tmp_path / "k")])
    assert result.exit_code == 2
    assert not (tmp_path / "k").exists()


def test_serve_needs_a_broker_and_redis() -> None:
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "THINKROUTE_KAFKA_BOOTSTRAP" in result.stderr and "thinkroute stack up" in result.stderr


def test_serve_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THINKROUTE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("THINKROUTE_REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "thinkroute api-key new --owner NAME" in result.stderr
