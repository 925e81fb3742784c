"""The docker-compose stack, checked part by part (no Docker engine runs on these machines).

The compose file parses with Debian's docker-compose 1.29; the Prometheus and Alertmanager
configurations it mounts pass promtool and amtool (rule files and templates resolved through the
compose file's own mounts); every host path it mounts exists; the Dockerfile installs the package
the way the README says; and Alertmanager starts from the stack's entrypoint without a webhook.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from exporter import semconv
from tests.servers import free_port, require_binary, wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _substitute(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's `${VAR:-default}` interpolation, with the defaults (or `env`)."""
    env = env or {}
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_substitute(COMPOSE.read_text()))
    return doc


def _binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of a service's bind mounts (named volumes left out)."""
    out = []
    for v in service.get("volumes", []):
        parts = v.split(":") if isinstance(v, str) else [v["source"], v["target"]]
        if parts[0].startswith((".", "/")):
            out.append((parts[0], parts[1]))
    return out


def host_path(service: str, container_path: str) -> Path:
    """The repository file the compose file mounts at `container_path` in `service`."""
    target = PurePosixPath(container_path)
    for src, dst in _binds(compose()["services"][service]):
        try:
            rel = target.relative_to(dst)
        except ValueError:
            continue
        return (ROOT / src / rel).resolve()
    raise AssertionError(f"{service} mounts nothing at {container_path}")


def _flag(service: str, name: str) -> str:
    for arg in compose()["services"][service].get("command", []):
        if arg.startswith(f"--{name}="):
            return str(arg.split("=", 1)[1])
    raise AssertionError(f"{service} has no --{name}")


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path:
        return path
    reason = "docker-compose not installed: apt-get install -y --no-install-recommends docker-compose"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- acceptance 1


@pytest.mark.servers
def test_compose_file_parses_with_docker_compose() -> None:
    """Debian's docker-compose 1.29 accepts the file (and the collector profile) with `config -q`."""
    binary = docker_compose()
    for extra in ([], ["--profile", "collector"]):
        done = subprocess.run(
            [binary, "-f", str(COMPOSE), *extra, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    services = subprocess.run(
        [binary, "-f", str(COMPOSE), "--profile", "collector", "config", "--services"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert set(services) == {
        "prometheus", "alertmanager", "grafana", "jaeger", "demo", "ingest", "otel-collector", "postgres",
    }  # fmt: skip


def test_compose_project_name_comes_from_env_file() -> None:
    """No top-level `name:` (compose 1.29 rejects it); `.env` names the project."""
    assert "name" not in compose()
    assert re.search(r"^COMPOSE_PROJECT_NAME=agent-exporter$", (ROOT / ".env").read_text(), re.M)


def test_every_mounted_host_path_exists() -> None:
    """Every bind mount's source is in the repository; named volumes are declared."""
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, service in doc["services"].items():
        for v in service.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith((".", "/")):
                path = (ROOT / src).resolve()
                assert path.exists(), f"{name} mounts {src}, which does not exist"
                assert ROOT in path.parents, f"{name} mounts {src} from outside the repository"
            else:
                assert src in declared, f"{name} uses volume {src!r}, not declared under volumes:"
    assert (ROOT / doc["services"]["demo"]["build"]).resolve() == ROOT and (ROOT / "Dockerfile").is_file()


def test_images_are_pinned_and_ports_bound_to_localhost() -> None:
    """No floating tags; every published port binds to 127.0.0.1 unless BIND_ADDR says otherwise."""
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        image = service["image"]
        # PostgreSQL's versions have two parts: 15.13 is a patch release of 15.
        pinned = re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image) or re.fullmatch(r"postgres:\d+\.\d+", image)
        assert pinned, f"{name}: image {image!r} is not pinned"
        for port in service.get("ports", []):
            assert port.startswith("${BIND_ADDR:-127.0.0.1}:"), f"{name}: port {port} is not bound to localhost"
        if name != "otel-collector":  # distroless image: no command to run a check with
            assert "healthcheck" in service, f"{name} has no health check"
    images = {n: s["image"] for n, s in raw["services"].items()}
    assert images["prometheus"].startswith("prom/prometheus:v3.")
    assert images["grafana"] == "grafana/grafana:11.6.0"
    assert images["jaeger"].startswith("jaegertracing/jaeger:2.")
    assert raw["services"]["otel-collector"]["profiles"] == ["collector"]


@pytest.mark.servers
def test_prometheus_config_passes_promtool_with_the_mounted_rules(tmp_path: Path) -> None:
    """`promtool check config` on the mounted config, rule globs resolved through the mounts."""
    promtool = require_binary("promtool")
    assert host_path("prometheus", _flag("prometheus", "config.file")) == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    # The rules folder is a tmpfs the entrypoint fills from the mounted alert_rules/ (links set there).
    rules_dir = tmp_path / "rules"
    env = dict(os.environ, RULES_SOURCE=str(host_path("prometheus", "/etc/prometheus/rules-src")),
               RULES_TARGET=str(rules_dir), PROMETHEUS_BIN="true")  # fmt: skip
    subprocess.run(["sh", str(ROOT / "deploy" / "prometheus" / "entrypoint.sh")], env=env, check=True, timeout=10)
    config["rule_files"] = [str(rules_dir / PurePosixPath(p).relative_to("/etc/prometheus/rules"))
                            for p in config["rule_files"]]  # fmt: skip
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(yaml.safe_dump(config))
    done = subprocess.run([promtool, "check", "config", str(rendered)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr
    assert [p.name for p in rules_dir.glob("*.yml")] == ["agent-rules.yml"]
    assert "--enable-feature=exemplar-storage" in compose()["services"]["prometheus"]["command"]


def test_prometheus_scrapes_the_demo_with_the_contract_job_name() -> None:
    """Job `agent-exporter` (semconv.SCRAPE_JOB) scrapes demo:9464 and ingest:9464; alerts go to alertmanager:9093."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = [t for sc in jobs[semconv.SCRAPE_JOB]["static_configs"] for t in sc["targets"]]
    assert targets == ["demo:9464", "ingest:9464"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "9464" in " ".join(compose()["services"]["demo"]["command"])
    assert compose()["services"]["demo"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


@pytest.mark.servers
def test_alertmanager_config_passes_amtool() -> None:
    """`amtool check-config` on the file the compose stack mounts as Alertmanager's config."""
    amtool = require_binary("amtool")
    config = host_path("alertmanager", _flag("alertmanager", "config.file"))
    assert config == (ROOT / "alert_rules" / "alertmanager" / "alertmanager.yml").resolve()
    done = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # The webhook file the entrypoint writes is where the config reads it from.
    slack_file = yaml.safe_load(config.read_text())["global"]["slack_api_url_file"]
    tmpfs = compose()["services"]["alertmanager"]["tmpfs"][0].split(":")[0]
    assert PurePosixPath(slack_file).parent == PurePosixPath(tmpfs)
    assert f"/etc/alertmanager/secrets/{PurePosixPath(slack_file).name}" == slack_file


@pytest.mark.servers
def test_alertmanager_starts_from_the_stack_entrypoint_without_a_webhook(tmp_path: Path) -> None:
    """The entrypoint starts a real Alertmanager with the mounted config; alerts show without Slack."""
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    port = free_port()
    config = host_path("alertmanager", _flag("alertmanager", "config.file"))
    env = dict(os.environ, ALERTMANAGER_BIN=binary, SLACK_WEBHOOK_TARGET=str(tmp_path / "secrets" / "url"))
    env.pop("SLACK_WEBHOOK_URL", None)
    env["SLACK_WEBHOOK_SOURCE"] = str(host_path("alertmanager", "/run/secrets/slack_webhook_url"))
    args = [
        f"--config.file={config}", f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]  # fmt: skip
    with (tmp_path / "am.log").open("wb") as log:
        proc = subprocess.Popen(
            ["sh", str(ROOT / "deploy" / "alertmanager" / "entrypoint.sh"), *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200, 20)
        alert = [{"labels": {"alertname": "AgentToolErrorRateHigh", "agent": "invoice", "severity": "warning"}}]
        req = urllib.request.Request(
            f"{url}/api/v2/alerts", data=json.dumps(alert).encode(), headers={"Content-Type": "application/json"}
        )
        assert urllib.request.urlopen(req, timeout=5).status == 200

        def listed() -> bool:
            body = json.loads(urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=2).read())
            return any(a["labels"].get("alertname") == "AgentToolErrorRateHigh" for a in body)

        wait_until(listed, 10)
        assert not (tmp_path / "secrets" / "url").exists()
        assert b"no Slack webhook" in (tmp_path / "am.log").read_bytes()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def test_alertmanager_entrypoint_writes_the_webhook_from_the_environment(tmp_path: Path) -> None:
    """SLACK_WEBHOOK_URL lands in the file the config reads, readable only by its owner."""
    target = tmp_path / "secrets" / "slack_webhook_url"
    env = dict(os.environ, SLACK_WEBHOOK_URL="https://hooks.slack.com/services/" "T0/B0/XYZ",
               SLACK_WEBHOOK_TARGET=str(target), ALERTMANAGER_BIN="true")  # fmt: skip
    subprocess.run(["sh", str(ROOT / "deploy" / "alertmanager" / "entrypoint.sh")], env=env, check=True, timeout=10)
    assert target.read_text() == "https://hooks.slack.com/services/" "T0/B0/XYZ\n"
    assert target.stat().st_mode & 0o077 == 0


def test_grafana_home_is_the_overview_dashboard() -> None:
    """GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH is the mounted agent-overview dashboard."""
    grafana = compose()["services"]["grafana"]
    home = host_path("grafana", grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home == (ROOT / "dashboards" / "agent-overview.json").resolve()
    assert json.loads(home.read_text())["uid"] == "agent-overview"
    assert host_path("grafana", "/etc/grafana/provisioning/datasources") == (ROOT / "grafana/provisioning/datasources")


# --------------------------------------------------------------------------- Dockerfile vs README


def _pip_install_args(commands: list[str]) -> list[list[str]]:
    found = []
    for command in commands:
        for part in re.split(r"&&|;", command):
            words = shlex.split(part.strip().replace("\\\n", " "))
            while words and words[0] in ("python", "python3", "-m"):
                words = words[1:]
            if words[:2] == ["pip", "install"]:
                found.append([w for w in words[2:] if not w.startswith("-")])
    return found


def readme_main_command() -> str:
    """The first command of the README's Quick start (the newcomer's path)."""
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", quick, re.S)
    assert block, "no code block under ## Quick start"
    return block.group(1).strip().splitlines()[0]


def test_dockerfile_installs_the_package_the_way_the_readme_does() -> None:
    """README: `pip install . && agent-exporter demo`; the Dockerfile runs the same pip install and command."""
    main = readme_main_command()
    assert main == "pip install . && agent-exporter demo"
    dockerfile = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", dockerfile)
    runs = [line[4:] for line in logical.splitlines() if line.startswith("RUN ")]
    # The same package, plus the PostgreSQL driver extra the stack's task store needs.
    assert _pip_install_args([main]) == [["."]]
    assert _pip_install_args(runs) == [[".[tasks-postgresql]"]]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "tasks-postgresql" in pyproject["project"]["optional-dependencies"]
    assert re.search(r"^FROM python:3\.1[12]-slim$", dockerfile, re.M)
    entry = json.loads(re.search(r"^ENTRYPOINT (.*)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.*)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert entry + cmd == ["agent-exporter", "demo", "--addr", "0.0.0.0"]
    assert main.split("&&")[1].split() == (entry + cmd)[:2]
    # Everything `pip install .` needs is in the build context.
    ignore = (ROOT / ".dockerignore").read_text()
    for needed in ("pyproject.toml", "README.md", "exporter/"):
        assert f"!{needed}" in ignore


def test_collector_profile_forwards_to_jaeger() -> None:
    """The collector's config (mounted where its command reads it) defines what its pipeline uses."""
    service = compose()["services"]["otel-collector"]
    path = service["command"][0].split("=", 1)[1]
    config = yaml.safe_load(host_path("otel-collector", path).read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind
    assert set(config["service"]["extensions"]) <= set(config["extensions"])
    endpoints = {e["endpoint"] for e in config["exporters"].values()}
    assert endpoints == {"jaeger:4317"}
    assert "memory_limiter" in pipeline["processors"] and "batch" in pipeline["processors"]


# --------------------------------------------------------------------------- the task store (issue 14)


def test_demo_writes_its_task_store_to_the_postgres_service() -> None:
    """The demo records every execution in the postgres service's database, password from the environment."""
    services = compose()["services"]
    pg, demo = services["postgres"], services["demo"]
    assert pg["image"].startswith("postgres:15.")
    env = pg["environment"]
    store = _flag("demo", "task-store")
    assert store == f"postgresql://{env['POSTGRES_USER']}@postgres:5432/{env['POSTGRES_DB']}"
    assert ":" not in store.split("//", 1)[1].split("@", 1)[0]  # no password in the URL
    assert demo["environment"]["PGPASSWORD"] == env["POSTGRES_PASSWORD"]
    assert "postgres" in demo["depends_on"] and "postgres" in services["grafana"]["depends_on"]
    assert any(v.startswith("postgres-data:/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pg_isready" in pg["healthcheck"]["test"]


def test_grafana_reads_the_task_store_as_the_read_only_role() -> None:
    """The provisioned PostgreSQL data source points at the postgres service's database, as the role
    the init script creates, with the password both services get from the same variable."""
    services = compose()["services"]
    pg = services["postgres"]
    sources = yaml.safe_load(host_path("grafana", "/etc/grafana/provisioning/datasources/datasources.yml").read_text())
    ds = next(d for d in sources["datasources"] if d["uid"] == "agent-tasks")
    assert ds["type"] == "grafana-postgresql-datasource"
    assert ds["url"] == "postgres:5432" and ds["jsonData"]["database"] == pg["environment"]["POSTGRES_DB"]
    assert ds["secureJsonData"]["password"] == "$TASKS_READER_PASSWORD"
    assert services["grafana"]["environment"]["TASKS_READER_PASSWORD"] == pg["environment"]["TASKS_READER_PASSWORD"]
    init = host_path("postgres", "/docker-entrypoint-initdb.d/10-tasks-reader.sh").read_text()
    assert f"CREATE ROLE {ds['user']} LOGIN" in init and "GRANT SELECT" in init
    assert not re.search(r"GRANT (INSERT|UPDATE|DELETE|ALL)", init)
