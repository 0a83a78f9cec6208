"""Session fixtures: the real broker (Tansu), a real Redis server and the replay LLM server,
each started once on a free loopback port; the classifier artefact built once and cached."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from tests.helpers import cache_dir
from workers.local.services import Service, start_broker, start_redis, start_replay
from workers.settings import InferenceSettings, RouterSettings, Settings, Topics


@pytest.fixture(scope="session")
def artifact() -> Path:
    """The default classifier artefact (built once and cached), or the one THINKROUTE_TEST_ARTIFACT names."""
    if os.environ.get("THINKROUTE_TEST_ARTIFACT"):
        return Path(os.environ["THINKROUTE_TEST_ARTIFACT"])
    from workers.classifier.cache import ensure_artifact

    return ensure_artifact(cache_dir(), progress=False)


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[Service]:
    svc = start_broker(services_dir / "broker")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[Service]:
    svc = start_redis(services_dir / "redis")
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def replay(services_dir: Path) -> Iterator[Service]:
    svc = start_replay(services_dir / "replay", time_scale=0.0)
    yield svc
    svc.stop()


@pytest.fixture
def slow_replay(services_dir: Path, unique: str, request: pytest.FixtureRequest) -> Iterator[Service]:
    """A replay server of the test's own with real (scaled) latency, so a job is still running when the test acts
    on it; its module's ``SLOW_TIME_SCALE`` (default 0.02) sets how slow."""
    svc = start_replay(services_dir / f"slow-{unique}", time_scale=getattr(request.module, "SLOW_TIME_SCALE", 0.02))
    yield svc
    svc.stop()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tempfile's directory is one of the test's own, checked empty after it (what intake copies must not stay)."""
    import tempfile

    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    assert list(d.iterdir()) == [], "a temporary file was left behind"


@pytest.fixture
async def redis(redis_server: Service) -> AsyncIterator[Redis]:
    client = Redis.from_url(f"redis://{redis_server.address}/0")
    yield client
    await client.aclose()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(broker: Service, redis_server: Service, replay: Service, unique: str) -> Settings:
    """Settings pointing at the session servers, with topic and group names unique to the test."""
    return Settings(
        kafka_bootstrap=broker.address,
        redis_url=SecretStr(f"redis://{redis_server.address}/0"),
        llm_base_url=f"http://{replay.address}/v1",
        topics=Topics(prompts=f"p-{unique}", reasoning=f"r-{unique}", direct=f"d-{unique}", dead=f"x-{unique}"),
        partitions=2,
        router=RouterSettings(group=f"router-{unique}", batch_max=16, batch_wait_ms=10),
        inference=InferenceSettings(group=f"inference-{unique}", concurrency=16, max_attempts=2, backoff_base_s=0.05),
        session_timeout_ms=6000,
        cache_dir=cache_dir(),
    )
