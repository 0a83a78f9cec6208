"""compose/ as it runs in production: alerts reach Alertmanager, every container's log is rotated, a worker is
healthy when it consumes (its /ready, checked by running the health command itself), the CPU services build
with the CPU onnxruntime, and the dashboard's job and group variables filter every panel."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import TopicPartition

from tests.unit.test_compose import COMPOSE, PROFILES, ROOT, dashboard, queried_names, rendered, thinkroute_services
from tests.unit.test_metrics import FakeConsumer
from workers.local.services import free_port
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.metrics_server import start_metrics_server

ALERTMANAGER = COMPOSE / "alertmanager" / "alertmanager.yml"


def routes(route: dict[str, Any]) -> list[dict[str, Any]]:
    return [route, *(r for child in route.get("routes", []) for r in routes(child))]


def test_alerts_reach_alertmanager_and_its_default_receiver(tmp_path: Path) -> None:
    model = rendered("local")
    am = model["services"]["alertmanager"]
    assert am["image"].startswith("prom/alertmanager:")
    [flag] = [a for a in am["command"] if a.startswith("--config.file=")]
    mounted = {v["target"]: Path(v["source"]) for v in am["volumes"] if v["type"] == "bind"}
    assert mounted[flag.removeprefix("--config.file=")] == ALERTMANAGER  # the file in compose/alertmanager/
    [port] = {p["target"] for p in am["ports"]}

    prom = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    managers = prom["alerting"]["alertmanagers"]
    [target] = [t for manager in managers for c in manager["static_configs"] for t in c["targets"]]
    assert target == f"alertmanager:{port}"

    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert cfg["route"]["receiver"] == "default"
    assert all(r.get("receiver", "default") in receivers for r in routes(cfg["route"]))
    [hook] = receivers["default"]["webhook_configs"]
    files = {c["target"]: model["configs"][c["source"]]["content"] for c in am["configs"]}
    assert hook["url_file"] in files and files[hook["url_file"]].startswith("http")  # written by compose

    alerts = yaml.safe_load((COMPOSE / "prometheus" / "alerts.yml").read_text())
    rules = {r["alert"]: r for g in alerts["groups"] for r in g["rules"]}
    severities = {r["labels"]["severity"] for r in rules.values()}
    for route in routes(cfg["route"]):  # the matchers name labels the alerts carry
        for matcher in route.get("matchers", []):
            assert re.fullmatch(r'severity="(\w+)"', matcher) and matcher.split('"')[1] in severities, matcher
    for rule in cfg.get("inhibit_rules", []):
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            name = re.fullmatch(r'alertname="(\w+)"', matcher)
            assert name and name.group(1) in rules, matcher

    # the URL is the operator's: ALERTMANAGER_WEBHOOK_URL from compose/.env reaches the file Alertmanager reads
    env = tmp_path / "hook.env"
    example = (COMPOSE / ".env.example").read_text()
    hook_url = "ALERTMANAGER_WEBHOOK_URL=https://hooks.example.com/x"
    env.write_text(re.sub(r"^ALERTMANAGER_WEBHOOK_URL=.*$", hook_url, example, flags=re.M))
    assert rendered("local", env)["configs"]["alertmanager-webhook-url"]["content"] == "https://hooks.example.com/x"


@pytest.mark.parametrize("profiles", PROFILES)
def test_every_service_rotates_its_logs(profiles: str) -> None:
    for name, svc in rendered(profiles)["services"].items():
        logging = svc.get("logging") or {}
        assert logging.get("driver") == "json-file", f"{name}: no json-file logging"
        options = logging.get("options") or {}
        assert re.fullmatch(r"\d+[kmg]", options.get("max-size", "")), f"{name}: max-size {options}"
        assert int(options.get("max-file", "0")) >= 2, f"{name}: max-file {options}"


def worker_health_checks(profiles: str) -> dict[str, list[str]]:
    services = thinkroute_services(rendered(profiles))
    return {n: s["healthcheck"]["test"] for n, s in services.items() if s["command"][:2] == ["thinkroute", "worker"]}


@pytest.mark.parametrize("profiles", PROFILES)
def test_worker_health_checks_ask_whether_it_consumes(profiles: str) -> None:
    checks = worker_health_checks(profiles)
    assert checks
    for name, test in checks.items():
        assert re.search(r"http://localhost:\d+/ready\b", " ".join(test)) and "/metrics" not in " ".join(test), name


async def test_the_worker_health_command_fails_until_the_consumer_joins() -> None:
    test = worker_health_checks("local")["inference"]
    assert test[:2] == ["CMD", "python"]
    m = WorkerMetrics("inference", "g")
    server = await start_metrics_server(m, "127.0.0.1", free_port())
    assert server is not None
    argv = [sys.executable, *(re.sub(r"localhost:\d+", f"127.0.0.1:{server.port}", a) for a in test[2:])]

    async def health() -> int:
        proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(proc.wait(), 30)

    try:
        assert await health() != 0  # 503: unhealthy
        m.watch(FakeConsumer({TopicPartition("r", 0): None}))  # type: ignore[arg-type]
        assert await health() == 0
    finally:
        await server.close()


@pytest.mark.parametrize("profiles", PROFILES)
def test_cpu_services_build_with_the_cpu_onnxruntime(profiles: str) -> None:
    services = thinkroute_services(rendered(profiles))
    tags = {}
    for name, svc in services.items():
        want = "onnxruntime-gpu" if name == "router" else "onnxruntime"  # router: the gpu profile's
        assert svc["build"]["args"]["ONNXRUNTIME"] == want, name
        tags.setdefault(want, set()).add(svc["image"])
    assert all(len(t) == 1 for t in tags.values()) and len(set().union(*tags.values())) == len(tags)  # one tag each
    text = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^ARG ONNXRUNTIME=onnxruntime$", text, re.M)  # a plain `docker build` is the CPU image
    assert "pip install --no-deps ." in text and re.search(r"onnxruntime\) ort=", text)
    assert re.search(r"onnxruntime-gpu\) ort=\"onnxruntime-gpu\[cuda,cudnn\]", text)
    # the build drops every requirement whose name starts with onnxruntime: exactly the two wheels
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in deps if d.startswith("onnxruntime")}
    assert names == {"onnxruntime", "onnxruntime-gpu"}


def test_dashboard_variables_for_job_and_group_are_used_by_the_panels() -> None:
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) == {"job", "consumergroup"}
    for name, v in variables.items():
        assert v["type"] == "query" and v["includeAll"] and v["multi"]
        assert re.fullmatch(rf"label_values\(.+, {name}\)", v["query"]["query"]), v["query"]
        assert v["definition"] == v["query"]["query"]
    for panel in dash["panels"]:
        for target in panel["targets"]:
            names = queried_names(target["expr"])
            if any(n.startswith(("thinkroute_", "process_")) for n in names):  # a worker's series: per job
                assert 'job=~"$job"' in target["expr"], (panel["title"], target["expr"])
            if any(n.startswith(("kafka_consumergroup", "thinkroute_consumer_")) for n in names):  # per group
                assert 'consumergroup=~"$consumergroup"' in target["expr"], (panel["title"], target["expr"])
            if any(n.startswith("kafka_") for n in names):  # the broker's view: the exporter only
                assert 'job="kafka-exporter"' in target["expr"], (panel["title"], target["expr"])
