"""The ingest service in the shipped stack and the scale-out overlay, checked by parsing.

(No Docker engine runs here: docker-compose 1.29 parses the files, the commands are parsed by
the real `agent-exporter ingest` argument parser, the Collector config is checked for the
pieces the load balancing needs.)
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Any

import pytest
import yaml

from exporter import semconv
from exporter.ingest.cli import add_arguments, settings_from
from exporter.ingest.service import IngestSettings
from tests.test_stack import COMPOSE, PROMETHEUS_CONFIG, ROOT, compose, docker_compose

SCALE = ROOT / "deploy" / "ingest-scale"


def _settings(command: list[str]) -> IngestSettings:
    assert command[0] == "ingest"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from(parser.parse_args(command[1:]))


def test_the_ingest_service_forwards_to_jaeger_and_is_scraped() -> None:
    """`ingest` listens on all interfaces in its container, forwards to Jaeger's OTLP/HTTP, and
    Prometheus scrapes its /metrics in the agent-exporter job."""
    service = compose()["services"]["ingest"]
    s = _settings(service["command"])
    assert (s.addr, s.port, s.metrics_addr, s.metrics_port) == ("0.0.0.0", 4318, "0.0.0.0", 9464)
    assert s.forward == "http://jaeger:4318/v1/traces"
    assert "4318" in {p.split(":")[-1] for p in compose()["services"]["jaeger"]["ports"]}
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == semconv.SCRAPE_JOB)
    assert f"ingest:{s.metrics_port}" in [t for sc in job["static_configs"] for t in sc["targets"]]


def _overlay() -> dict[str, Any]:
    return yaml.safe_load((SCALE / "compose.yml").read_text())  # type: ignore[no-any-return]


@pytest.mark.servers
def test_the_scale_overlay_parses_with_docker_compose() -> None:
    """docker-compose 1.29 accepts the main file plus the overlay, with its profile on."""
    done = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "-f", str(SCALE / "compose.yml"), "--profile", "ingest-scale",
         "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_load_balancer_routes_by_trace_id_to_every_replica() -> None:
    """The Collector's loadbalancing exporter routes by trace id over OTLP/gRPC to exactly the
    replicas the overlay runs, each of which receives gRPC on that port."""
    overlay = _overlay()["services"]
    replicas = {name: _settings(s["command"]) for name, s in overlay.items() if name != "ingest-lb"}
    assert len(replicas) == 3
    config = yaml.safe_load((SCALE / "collector.yaml").read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind
    lb = config["exporters"]["loadbalancing"]
    assert pipeline["exporters"] == ["loadbalancing"]
    assert lb["routing_key"] == "traceID"
    assert set(lb["protocol"]) == {"otlp"}  # the only protocol it speaks: gRPC
    hosts = {h.rsplit(":", 1)[0]: int(h.rsplit(":", 1)[1]) for h in lb["resolver"]["static"]["hostnames"]}
    assert hosts == {name: s.grpc_port for name, s in replicas.items()}
    assert all(s.forward == "http://jaeger:4318/v1/traces" and s.addr == "0.0.0.0" for s in replicas.values())
    lb_service = overlay["ingest-lb"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in lb_service["volumes"]}
    assert (ROOT / mounted[lb_service["command"][0].split("=", 1)[1]]).resolve() == SCALE / "collector.yaml"


def test_the_replica_scrape_snippet_names_the_replicas() -> None:
    """prometheus-scrape.yml lists each replica's /metrics."""
    [entry] = yaml.safe_load((SCALE / "prometheus-scrape.yml").read_text())
    overlay = _overlay()["services"]
    expected = sorted(f"{n}:{_settings(s['command']).metrics_port}" for n, s in overlay.items() if n != "ingest-lb")
    assert sorted(entry["targets"]) == expected
