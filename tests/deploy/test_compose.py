"""deploy/compose: the docker-compose file, checked statically (Docker does not run in CI).

YAML parses, every referenced service and volume exists, every mounted path exists in
the repository, the workers only set environment variables stream/settings.py reads,
and Prometheus and Grafana are wired to the files the other deploy/ tests check.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from deployfiles import DEPLOY, ROOT

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items()
            if "worker" in (s.get("command") or []) and "ratehound" in (s.get("command") or [])}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host, container) of each volume entry; host is a named volume or a path."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v["source"], v["target"]))
        else:
            host, container = v.split(":")[:2]
            out.append((host, container))
    return out


def _host_path(host: str) -> Path | None:
    return (COMPOSE_DIR / host).resolve() if host.startswith((".", "/")) else None


def test_the_stack_has_its_services(compose):
    services = compose["services"]
    assert {"kafka", "redis", "prometheus", "grafana"} <= services.keys()
    assert len(_workers(compose)) >= 2, "N ratehound workers"
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in _env(kafka)["KAFKA_PROCESS_ROLES"], "KRaft: no ZooKeeper"


def test_references_resolve(compose):
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, s in services.items():
        deps = s.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"
        for host, _ in _mounts(s):
            if _host_path(host) is None:
                assert host in volumes, f"{name} mounts undeclared volume {host}"


def test_mounted_paths_exist_in_the_repository(compose):
    for name, s in compose["services"].items():
        for host, _ in _mounts(s):
            path = _host_path(host)
            if path is not None:
                assert path.exists(), f"{name} mounts {host}, which is not in the repository"
                assert ROOT in path.parents, f"{name} mounts {host} from outside the repository"


def test_build_context_and_dockerfile_exist(compose):
    for name, s in _workers(compose).items():
        build = s["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        dockerfile = context / build["dockerfile"]
        assert context == ROOT and dockerfile.is_file(), name
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                for src in shlex.split(line)[1:-1]:
                    if not src.startswith("--"):
                        assert (context / src).exists(), f"{dockerfile.name}: COPY {src}: not in the build context"


def test_workers_set_only_variables_the_settings_read(compose):
    from stream.settings import Settings

    security = (ROOT / "stream" / "security.py").read_text()  # RATEHOUND_KAFKA_*: read by KafkaSecurity.from_env
    known = {Settings.variable(f) for f in Settings.model_fields} | set(re.findall(r'"(RATEHOUND_KAFKA_[A-Z0-9_]+)"',
                                                                                  security))
    assert {"KAFKA_BROKER", "REDIS_URL", "RATEHOUND_CONFIG", "RATEHOUND_KAFKA_SASL_USERNAME"} <= known
    for name, s in _workers(compose).items():
        env = _env(s)
        unknown = set(env) - known
        assert not unknown, f"{name} sets {unknown}, which stream/settings.py never reads"
        assert env["KAFKA_BROKER"].removeprefix("kafka://").split(":")[0] in compose["services"]
        assert env["REDIS_URL"].split("//")[1].split(":")[0] in compose["services"]
        assert env["RATEHOUND_WEB_HOST"] == "0.0.0.0"
        assert float(env["RATEHOUND_REBALANCE_TIMEOUT_S"]) >= 30
        assert int(env["RATEHOUND_PARTITIONS"]) >= 1
        mounts = dict((c, h) for h, c in _mounts(s))
        assert _host_path(mounts[env["RATEHOUND_CONFIG"]]) == (DEPLOY / "config" / "thresholds.yaml").resolve()
    partitions = {_env(s)["RATEHOUND_PARTITIONS"] for s in _workers(compose).values()}
    assert len(partitions) == 1, "every worker must use the same RATEHOUND_PARTITIONS"


def test_kafka_init_creates_every_topic_with_the_workers_partitions(compose, monkeypatch):
    for var in [v for v in os.environ if v.startswith("RATEHOUND_")]:
        monkeypatch.delenv(var)
    from stream.settings import Settings
    from stream.topics import topic_partitions

    init = compose["services"]["kafka-init"]
    script = " ".join(init["command"])
    for topic in topic_partitions(Settings()):
        assert re.search(rf"(^|\s){re.escape(topic)}(\s|;|$)", script), f"kafka-init does not create {topic}"
    (worker, *_) = _workers(compose).values()
    assert _env(init)["PARTITIONS"] == _env(worker)["RATEHOUND_PARTITIONS"]


def test_published_ports_are_loopback_only(compose):
    for name, s in compose["services"].items():
        for p in s.get("ports") or []:
            assert str(p).startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback"


def test_prometheus_gets_its_config_rules_and_the_worker_targets(compose):
    prom = compose["services"]["prometheus"]
    mounts = {c: _host_path(h) for h, c in _mounts(prom)}
    assert mounts["/etc/prometheus"] == (DEPLOY / "prometheus").resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for rf in cfg["rule_files"]:
        assert (DEPLOY / "prometheus" / rf).is_file()
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "ratehound")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = {f"{name}:{_env(s).get('RATEHOUND_WEB_PORT', '6066')}" for name, s in _workers(compose).items()}
    assert targets == expected


def test_grafana_gets_provisioning_and_the_dashboards(compose):
    graf = compose["services"]["grafana"]
    mounts = {c: _host_path(h) for h, c in _mounts(graf)}
    assert mounts["/etc/grafana/provisioning"] == (DEPLOY / "grafana" / "provisioning").resolve()
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/ratehound.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    assert mounts.get(path) == (DEPLOY / "grafana" / "dashboards").resolve(), \
        f"the dashboard provider reads {path}; mount deploy/grafana/dashboards there"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"].split("//")[1].split(":")[0] in compose["services"]
