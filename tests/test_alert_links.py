"""The links in every alert lead somewhere: dashboard, runbook and Jaeger bases (issue 13, items 3 and 7).

Defaults are the compose stack's own addresses (Grafana, the runbook page its Prometheus serves,
Jaeger); the stack's Prometheus entrypoint swaps them for GRAFANA_URL, RUNBOOK_URL and JAEGER_URL.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from alert_rules import rules as rules_module
from alert_rules.render import RULES_FILE, RUNBOOK_PAGE, Params, semconv
from tests.servers import PrometheusServer, require_binary
from tests.test_stack import compose, host_path

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "deploy" / "prometheus" / "entrypoint.sh"
LINKS = ("dashboard_url", "runbook_url", "jaeger_url")


def _alerts(text: str) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r]


def _shipped_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "docker-compose.yml", *ROOT.glob("docs/*.md"), *ROOT.glob("deploy/**/*")]
    files += [p for p in (ROOT / "alert_rules").rglob("*") if p.suffix in (".yml", ".tmpl", ".html", ".py")]
    return [p for p in files if p.is_file()]


def test_no_link_to_a_repository_that_does_not_exist() -> None:
    """No shipped file points at the made-up agent-exporter/agent-exporter repository."""
    offenders = [str(p.relative_to(ROOT)) for p in _shipped_files() if "github.com/agent-exporter" in p.read_text()]
    assert offenders == []


def test_every_alert_link_starts_with_a_base_the_stack_serves() -> None:
    """Each dashboard, runbook and Jaeger link in the committed rules starts with its default base."""
    bases = {"dashboard_url": Params.grafana_url + "/d/", "runbook_url": Params.runbook_base + "#",
             "jaeger_url": Params.jaeger_url + "/search?"}  # fmt: skip
    for rule in _alerts(RULES_FILE.read_text()):
        for key, value in rule["annotations"].items():  # type: ignore[attr-defined]
            if key in LINKS:
                assert bases[key] in value, (rule["alert"], key, value)


def test_default_bases_are_published_by_the_compose_stack() -> None:
    """Grafana (its root URL), the runbook page (Prometheus user assets) and Jaeger answer at the defaults."""
    services = compose()["services"]
    assert services["grafana"]["environment"]["GF_SERVER_ROOT_URL"] == Params.grafana_url
    assert any(p.endswith(":3000:3000") for p in services["grafana"]["ports"])
    assert any(p.endswith(":16686:16686") for p in services["jaeger"]["ports"]) and Params.jaeger_url.endswith(":16686")
    prometheus = services["prometheus"]
    assert any(p.endswith(":9090:9090") for p in prometheus["ports"])
    assets = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--web.user-assets="))
    assert Params.runbook_base == "http://localhost:9090/user/runbook.html"
    assert host_path("prometheus", f"{assets}/runbook.html") == RUNBOOK_PAGE


def test_runbook_page_has_an_anchor_for_every_alert() -> None:
    """The served runbook page has the `id` each alert's runbook_url jumps to."""
    ids = set(re.findall(r'id="([^"]+)"', RUNBOOK_PAGE.read_text()))
    assert {name.lower() for name in semconv.ALERTS} <= ids


def test_entrypoint_replaces_the_bases_render_py_writes() -> None:
    """The entrypoint's defaults are the rendered defaults, so its substitution finds them."""
    text = ENTRYPOINT.read_text()
    defaults = dict(re.findall(r'^default_(\w+)="([^"]+)"$', text, re.M))
    assert defaults == {"grafana": rules_module.DEFAULT_GRAFANA_URL, "runbook": rules_module.DEFAULT_RUNBOOK_URL,
                        "jaeger": rules_module.DEFAULT_JAEGER_URL}  # fmt: skip


def _run_entrypoint(tmp_path: Path, **env: str) -> str:
    target = tmp_path / "rules"
    full = dict(os.environ, RULES_SOURCE=str(ROOT / "alert_rules"), RULES_TARGET=str(target), PROMETHEUS_BIN="true")
    for key in ("GRAFANA_URL", "RUNBOOK_URL", "JAEGER_URL", "PROMETHEUS_URL"):
        full.pop(key, None)
    full.update(env)
    subprocess.run(["sh", str(ENTRYPOINT)], env=full, check=True, timeout=10, capture_output=True)
    assert [p.name for p in target.iterdir()] == ["agent-rules.yml"]
    return (target / "agent-rules.yml").read_text()


def test_entrypoint_without_settings_keeps_the_rules_as_rendered(tmp_path: Path) -> None:
    """With no URL set, Prometheus loads the committed rules byte for byte."""
    assert _run_entrypoint(tmp_path) == RULES_FILE.read_text()


@pytest.mark.servers
def test_entrypoint_sets_every_link_from_the_environment(tmp_path: Path) -> None:
    """GRAFANA_URL, RUNBOOK_URL and JAEGER_URL (with `&`, a trailing slash) replace the bases; promtool agrees."""
    text = _run_entrypoint(tmp_path, GRAFANA_URL="https://grafana.example.org/",
                           JAEGER_URL="https://jaeger.example.org",
                           RUNBOOK_URL="https://wiki.example.org/page?id=agents&rev=2")  # fmt: skip
    assert "localhost" not in text
    for rule in _alerts(text):
        notes = rule["annotations"]
        assert notes["dashboard_url"].startswith("https://grafana.example.org/d/")  # type: ignore[index]
        assert notes["runbook_url"] == f"https://wiki.example.org/page?id=agents&rev=2#{str(rule['alert']).lower()}"  # type: ignore[index]
        if "jaeger_url" in notes:  # type: ignore[operator]
            assert "}}https://jaeger.example.org/search?service=" in notes["jaeger_url"]  # type: ignore[index]
    path = tmp_path / "rules" / "agent-rules.yml"
    result = subprocess.run([require_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_url_follows_prometheus_url(tmp_path: Path) -> None:
    """Without RUNBOOK_URL, the runbook page is the one served under PROMETHEUS_URL."""
    text = _run_entrypoint(tmp_path, PROMETHEUS_URL="https://prometheus.example.org")
    assert "https://prometheus.example.org/user/runbook.html#agentexporterdown" in text


@pytest.mark.servers
def test_prometheus_serves_the_runbook_page(
    tmp_path: Path, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    """A real Prometheus with the stack's --web.user-assets serves runbook.html with every alert's anchor."""
    prom = prometheus_factory({"global": {"scrape_interval": "15s"}},
                              extra_args=[f"--web.user-assets={RUNBOOK_PAGE.parent}"])  # fmt: skip
    with urllib.request.urlopen(f"{prom.url}/user/runbook.html", timeout=5) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert all(f'id="{name.lower()}"' in page for name in semconv.ALERTS)
