"""deploy/kubernetes/: current with its sources, valid against Kubernetes and Prometheus Operator schemas.

Schemas, offline: core objects against Kubernetes 1.33's (the `kubernetes-validate` package); the
operator's objects against the Prometheus Operator v0.80.1 CRDs as the PyPI package
`cloudcoil-models-prometheus-operator==0.80.1.0` ships them (models generated from those CRDs,
Apache-2.0). A model ignores unknown fields, so each object must also survive a round trip
unchanged: a misspelt or misplaced field fails there.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from alert_rules.alertmanager_config import (
    TEMPLATES_DIR,
    AlertmanagerParams,
    EmailParams,
    WebhookParams,
    alertmanager_doc,
)
from alert_rules.render import Params, render_rules
from dashboards import build as dashboards
from exporter import semconv

ROOT = Path(__file__).resolve().parent.parent
KUBE_DIR = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
OPERATOR_VERSION = "0.80.1"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_kubernetes_build", KUBE_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


k8s = _load_generator()


def _need(module: str) -> Any:
    """Import a validation package; skip without it, but fail in CI (the test extra installs it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for name, text in files.items() if name != "kustomization.yaml" for d in yaml.safe_load_all(text)]


COMMITTED = {p.name: p.read_text(encoding="utf-8") for p in sorted(KUBE_DIR.glob("*.yaml"))}
OBJECTS = _objects(COMMITTED)
CORE = [o for o in OBJECTS if o["apiVersion"] in ("v1", "apps/v1")]
OPERATOR = [o for o in OBJECTS if o["apiVersion"].startswith("monitoring.coreos.com/")]


def _by_kind(kind: str, objects: list[dict[str, Any]] = OBJECTS) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _operator_model(obj: dict[str, Any]) -> Any:
    models = _need("cloudcoil.models.prometheus_operator")
    version = obj["apiVersion"].rpartition("/")[2]
    return getattr(importlib.import_module(f"{models.__name__}.{version}"), obj["kind"])


def _validate_operator(obj: dict[str, Any]) -> None:
    """Validate against the CRD's model; a field the model does not know makes the round trip differ."""
    dumped = _operator_model(obj).model_validate(obj).model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == obj, f"{obj['kind']} {obj['metadata']['name']}: a field is unknown to the v{OPERATOR_VERSION} CRD"


def test_committed_manifests_are_current() -> None:
    """Regenerating from alert_rules/ and dashboards/ reproduces the committed files byte for byte."""
    built = k8s.build()
    assert sorted(built) == sorted(COMMITTED), "a file is missing or left over: run python3 deploy/kubernetes/build.py"
    for name, text in built.items():
        assert COMMITTED[name] == text, f"deploy/kubernetes/{name} is stale: run python3 deploy/kubernetes/build.py"


def test_check_flag_fails_on_stale_then_passes(tmp_path: Path) -> None:
    """`--check` exits 1 while a file differs and 0 once the folder has been rendered."""
    assert k8s.main(["--out", str(tmp_path), "--check"]) == 1
    assert k8s.main(["--out", str(tmp_path)]) == 0
    assert k8s.main(["--out", str(tmp_path), "--check"]) == 0
    assert {p.name: p.read_text() for p in tmp_path.glob("*.yaml")} == COMMITTED


def test_settings_without_out_are_refused() -> None:
    """A non-default release without --out is refused, so the committed files keep the defaults."""
    assert k8s.main(["--release", "prom", "--check"]) == 2


def test_out_renders_the_release_and_namespace(tmp_path: Path) -> None:
    """--release and --namespace reach every object's label and the kustomization."""
    assert k8s.main(["--out", str(tmp_path), "--release", "prom", "--namespace", "observability"]) == 0
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "observability"
    assert kustomization["labels"][0]["pairs"] == {"release": "prom"}
    files = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    assert {o["metadata"]["labels"]["release"] for o in _objects(files)} == {"prom"}


def test_bad_release_is_a_value_error() -> None:
    """A release that is not a label value fails at construction."""
    with pytest.raises(ValueError, match="release"):
        k8s.KubeParams(release="my release")


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k deploy/kubernetes` installs every generated file, and sets the namespace."""
    kustomization = yaml.safe_load(COMMITTED["kustomization.yaml"])
    assert sorted(kustomization["resources"]) == sorted(set(COMMITTED) - {"kustomization.yaml"})
    assert kustomization["namespace"] == k8s.KubeParams.namespace
    kinds = {"PrometheusRule", "PodMonitor", "AlertmanagerConfig", "ConfigMap", "Deployment", "Service"}
    assert kinds == {o["kind"] for o in OBJECTS}


def test_core_objects_validate_against_kubernetes_schema() -> None:
    """Every core object passes Kubernetes' schema in strict mode (no unknown fields)."""
    kv = _need("kubernetes_validate")
    assert CORE
    for obj in CORE:
        kv.validate(obj, KUBERNETES_VERSION, strict=True)


def test_kubernetes_validation_rejects_a_misplaced_field() -> None:
    """The core check can fail: a label map under the wrong key is rejected."""
    kv = _need("kubernetes_validate")
    bad = copy.deepcopy(CORE[0])
    bad["metadata"]["label"] = bad["metadata"].pop("labels")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, KUBERNETES_VERSION, strict=True)


def test_operator_objects_validate_against_crd_schemas() -> None:
    """PrometheusRule, PodMonitor and AlertmanagerConfig pass the v0.80.1 CRD schemas."""
    assert len(OPERATOR) == 3
    for obj in OPERATOR:
        _validate_operator(obj)


@pytest.mark.parametrize(
    ("path", "value"),
    [(("spec", "scrapeProtocol"), ["OpenMetricsText1.0.0"]),  # misspelt field
     (("spec", "scrapeProtocols"), ["OpenMetrics"]),  # not in the enum
     (("spec", "namespaceSelector", "any"), "yes")],  # wrong type
    ids=["unknown-field", "enum", "type"],
)  # fmt: skip
def test_crd_validation_rejects_bad_podmonitors(path: tuple[str, ...], value: object) -> None:
    """The operator check can fail: an unknown field, a value outside an enum, a wrong type."""
    bad = copy.deepcopy(_by_kind("PodMonitor")[0])
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    pydantic = _need("pydantic")
    with pytest.raises((AssertionError, pydantic.ValidationError)):
        _validate_operator(bad)


def test_prometheusrule_holds_the_rule_file() -> None:
    """The PrometheusRule's groups are the committed alert_rules/agent-rules.yml, rule for rule."""
    (rule,) = _by_kind("PrometheusRule")
    assert rule["spec"] == yaml.safe_load((ROOT / "alert_rules" / "agent-rules.yml").read_text())
    assert rule["spec"] == yaml.safe_load(render_rules(Params()))


@pytest.mark.servers
def test_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    """`promtool check rules` accepts the groups inside the PrometheusRule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    (rule,) = _by_kind("PrometheusRule")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_podmonitor_scrapes_labelled_pods_as_the_rules_job() -> None:
    """Pods with the documented label are scraped as job `agent-exporter`, OpenMetrics first (exemplars)."""
    (pm,) = _by_kind("PodMonitor")
    assert pm["spec"]["selector"] == {"matchLabels": {k8s.POD_LABEL: "true"}}
    assert pm["spec"]["scrapeProtocols"][0] == "OpenMetricsText1.0.0"
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    job = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert job == [{"action": "replace", "targetLabel": "job", "replacement": semconv.SCRAPE_JOB}]
    assert endpoint["port"] == "metrics"


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    """One ConfigMap per dashboard, labelled `grafana_dashboard: "1"`, in a folder, holding the committed JSON."""
    maps = [m for m in _by_kind("ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]]
    assert len(maps) == len(dashboards.BUILDERS)
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Agents"}
        ((key, text),) = cm["data"].items()
        assert text == dashboards.path_for(key.removesuffix(".json")).read_text(encoding="utf-8")
        json.loads(text)


def test_templates_configmap_holds_every_message_template() -> None:
    """The Alertmanager templates ConfigMap holds every .tmpl file the receivers use, unchanged."""
    (cm,) = [m for m in _by_kind("ConfigMap") if m["metadata"]["name"].endswith("alertmanager-templates")]
    assert cm["data"] == {p.name: p.read_text(encoding="utf-8") for p in TEMPLATES_DIR.glob("*.tmpl")}


def test_every_object_carries_the_release_label() -> None:
    """Every object has the kustomization's `release` label, and all label keys and values are valid."""
    release = yaml.safe_load(COMMITTED["kustomization.yaml"])["labels"][0]["pairs"]["release"]
    key = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
    value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
    for obj in OBJECTS:
        labels = obj["metadata"]["labels"]
        assert labels["release"] == release
        assert all(key.match(k) and value.match(v) for k, v in labels.items()), labels
    assert key.match(k8s.POD_LABEL)


def test_objects_fit_client_side_apply() -> None:
    """Each object is under the 256 KiB last-applied annotation limit of `kubectl apply`."""
    for obj in OBJECTS:
        assert len(json.dumps(obj)) < 262_144, obj["metadata"]["name"]


def _matcher_text(m: dict[str, str]) -> str:
    return f'{m["name"]}{m["matchType"]}"{m["value"]}"'


def test_alertmanagerconfig_routes_like_alertmanager_yml() -> None:
    """Routes, matchers, inhibitions and receivers are those of alert_rules' Alertmanager configuration."""
    (amc,) = _by_kind("AlertmanagerConfig")
    doc = alertmanager_doc(AlertmanagerParams())
    spec = amc["spec"]

    def route_text(route: dict[str, Any]) -> list[Any]:
        return [route.get("receiver"), [_matcher_text(m) for m in route.get("matchers", [])],
                [route_text(r) for r in route.get("routes", [])]]  # fmt: skip

    def doc_text(route: dict[str, Any]) -> list[Any]:
        return [route.get("receiver"), route.get("matchers", []), [doc_text(r) for r in route.get("routes", [])]]

    assert route_text(spec["route"]) == doc_text(doc["route"])
    assert [[_matcher_text(m) for m in r["sourceMatch"]] for r in spec["inhibitRules"]] == [
        r["source_matchers"] for r in doc["inhibit_rules"]
    ]
    assert [r["name"] for r in spec["receivers"]] == [r["name"] for r in doc["receivers"]]
    for receiver in spec["receivers"]:
        (slack,) = receiver["slackConfigs"]
        assert slack["apiURL"] == {"name": k8s.KubeParams.secret, "key": k8s.SECRET_KEYS["slack"]}
        assert slack["sendResolved"] is True


def test_email_and_webhook_receivers_take_their_secrets_from_the_secret() -> None:
    """With email and a webhook on, every secret is a Secret key reference, and the CRD accepts it."""
    am = AlertmanagerParams(
        critical_slack_api_url_file="/x/critical",
        email=EmailParams(to="ops@example.com", from_="am@example.com", smarthost="smtp.example.com:587",
                          auth_username="am", auth_password_file="/x/pw", tls_ca_file="/x/ca.crt",
                          tls_server_name="smtp.example.com"),
        webhook=WebhookParams(url_file="/x/url", bearer_token_file="/x/token"),
    )  # fmt: skip
    amc = k8s.alertmanager_config(k8s.KubeParams(), am)
    _validate_operator(amc)
    receivers = {r["name"]: r for r in amc["spec"]["receivers"]}
    secret = k8s.KubeParams.secret
    assert receivers["critical"]["slackConfigs"][0]["apiURL"]["key"] == k8s.SECRET_KEYS["slack_critical"]
    assert receivers["warning"]["slackConfigs"][0]["apiURL"]["key"] == k8s.SECRET_KEYS["slack"]
    email = receivers["warning"]["emailConfigs"][0]
    assert email["authPassword"] == {"name": secret, "key": k8s.SECRET_KEYS["smtp_password"]}
    assert email["tlsConfig"]["ca"] == {"secret": {"name": secret, "key": k8s.SECRET_KEYS["smtp_ca"]}}
    assert {"key": "Subject", "value": '{{ template "agent.email.subject" . }}'} in email["headers"]
    webhook = receivers["critical"]["webhookConfigs"][0]
    assert webhook["urlSecret"] == {"name": secret, "key": k8s.SECRET_KEYS["webhook_url"]}
    assert webhook["httpConfig"]["authorization"]["credentials"]["key"] == k8s.SECRET_KEYS["webhook_token"]
    assert "/x/" not in json.dumps(amc), "a file path leaked into the AlertmanagerConfig"


def test_an_untranslated_alertmanager_key_raises() -> None:
    """A key added to alert_rules' routing without a translation here fails the build, not silently."""
    with pytest.raises(ValueError, match="mute_time"):
        k8s._route({"receiver": "warning", "mute_time": ["nights"]})


def test_readme_documents_the_kubernetes_set_up() -> None:
    """README's "On Kubernetes" names the two commands, the pod label, the release label and the Secret."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### On Kubernetes", 1)[1].split("\n## ", 1)[0]
    for needle in ("kubectl apply -k deploy/kubernetes", k8s.POD_LABEL, "release", k8s.KubeParams.secret,
                   *k8s.SECRET_KEYS.values(), "exemplar-storage", "PROMETHEUS_MULTIPROC_DIR", "sendExemplars",
                   "folderAnnotation", "alertmanagerConfigSelector", "ingest"):  # fmt: skip
        assert needle in section, needle


def test_ingest_service_is_scraped_and_bounded() -> None:
    """The ingest Deployment's pods carry the PodMonitor's label and a `metrics` port, with resource limits."""
    (deployment,) = _by_kind("Deployment")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"][k8s.POD_LABEL] == k8s.POD_LABEL_VALUE
    (container,) = pod["spec"]["containers"]
    assert container["args"][0] == "ingest" and "--addr=0.0.0.0" in container["args"]
    assert {p["name"] for p in container["ports"]} == {"otlp-http", k8s.METRICS_PORT}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["securityContext"]["runAsNonRoot"] is True
    (service,) = _by_kind("Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pod["metadata"]["labels"].items() >= service["spec"]["selector"].items()
