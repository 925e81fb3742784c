"""Structural tests of the Grafana dashboards (dashboards/*.json) and provisioning (grafana/provisioning).

The committed JSON is what Grafana loads, so the checks read those files; one test proves they equal the
generator's output. Target: Grafana 11.6 (dashboard schemaVersion 41).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from exporter import semconv
from tests.servers import require_binary

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"
DATASOURCES_FILE = PROVISIONING / "datasources" / "datasources.yml"
PROVIDERS_FILE = PROVISIONING / "dashboards" / "dashboards.yml"

PROMETHEUS_UIDS = {
    "agent-overview", "agent-completion-trends", "agent-runtime", "agent-evaluations", "agent-tools", "agent-versions",
    "agent-cost",
}  # fmt: skip
TASKS_UID = "agent-tasks"  # SQL on the task store (tests/test_dashboards_tasks_live.py)
EXPECTED_UIDS = PROMETHEUS_UIDS | {TASKS_UID}
DATASOURCE_UIDS = {
    "prometheus": "prometheus", "jaeger": "jaeger", "alertmanager": "alertmanager",
    "agent-tasks": "grafana-postgresql-datasource",
}  # uid: type  # fmt: skip
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"  # where the compose stack mounts ./dashboards
UNITS = {"percentunit", "s", "short", "currencyUSD", "opm", "none"}
ALLOWED_WINDOWS = {"$__rate_interval"}
AGGREGATION_WINDOW = "$" + build.AGGREGATION_VAR
RANGE_WINDOW = "$__range"
# Variables that take one value: the versions dashboard compares two versions of one agent.
SINGLE_VALUE = {("agent-versions", "agent"), ("agent-versions", "version_a"), ("agent-versions", "version_b")}

# Keys Grafana 11 documents for provisioning files (docs/sources/administration/provisioning/index.md).
DATASOURCE_KEYS = {
    "name", "type", "access", "orgId", "uid", "url", "user", "database", "basicAuth", "basicAuthUser",
    "withCredentials", "isDefault", "jsonData", "secureJsonData", "version", "editable",
}  # fmt: skip
PROVIDER_KEYS = {
    "name", "orgId", "folder", "folderUid", "type", "disableDeletion", "updateIntervalSeconds", "allowUiUpdates",
    "options",
}  # fmt: skip
PROVIDER_OPTION_KEYS = {"path", "foldersFromFilesStructure"}


def load_dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards, keyed by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


ALL_DASHBOARDS = load_dashboards()
# The PromQL checks below read the Prometheus dashboards; the Tasks one is SQL.
DASHBOARDS = {name: d for name, d in ALL_DASHBOARDS.items() if d["uid"] != TASKS_UID}


def panels() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, p) for d in DASHBOARDS.values() for p in d["panels"]]


def targets() -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    return [(d, p, t) for d, p in panels() for t in p.get("targets", [])]


# --------------------------------------------------------------------------- a small PromQL scanner

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WINDOW = re.compile(r"\[([^\]]*)\]")
_OFFSET = re.compile(r"\boffset\s+-?\S+")
_TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)"
    r"|(?P<variable>\$\{?\w+(?::\w+)?\}?)"
    r"|(?P<ident>[A-Za-z_:][\w:]*)(?P<call>\s*\()?"
)
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "atan2", "inf", "nan", "start", "end",
}  # fmt: skip


def windows(expr: str) -> list[str]:
    """The range/subquery windows of an expression (`[5m]` -> `5m`)."""
    return _WINDOW.findall(_STRING.sub('""', expr))


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: no functions, keywords, label names, strings or durations."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _WINDOW.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    names = set()
    for m in _TOKEN.finditer(text):
        ident = m.group("ident")
        if ident and not m.group("call") and ident.lower() not in _KEYWORDS:
            names.add(ident)
    return names


ALLOWED_METRICS = {n for spec in semconv.METRICS for n in semconv.exposed_series_names(spec)} | build.EXTRA_METRICS


# --------------------------------------------------------------------------- dashboards


def test_every_dashboard_file_is_valid_json_with_a_fixed_uid() -> None:
    """Each JSON file in dashboards/ parses and the set of uids is exactly the six agreed ones."""
    assert len(ALL_DASHBOARDS) == len(EXPECTED_UIDS)
    assert {d["uid"] for d in ALL_DASHBOARDS.values()} == EXPECTED_UIDS
    assert set(build.PROMETHEUS_DASHBOARDS) == PROMETHEUS_UIDS
    for name, dash in ALL_DASHBOARDS.items():
        assert name == f"{dash['uid']}.json"


def test_committed_json_equals_generator_output() -> None:
    """The committed JSON is current: `python -m dashboards.build` would not change it."""
    for uid, dash in build.build_all().items():
        assert build.path_for(uid).read_text(encoding="utf-8") == build.render(dash), "run: python -m dashboards.build"


def test_dashboards_target_grafana_11_6_schema() -> None:
    """Every dashboard has schemaVersion 41 (Grafana 11.6), a null id, a title and the shared tag."""
    titles = [d["title"] for d in ALL_DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)
    for dash in ALL_DASHBOARDS.values():
        assert dash["schemaVersion"] == 41
        assert dash["id"] is None
        assert dash["title"] and dash["description"]
        assert build.TAG in dash["tags"]


def test_panel_ids_are_unique_per_dashboard() -> None:
    """No two panels of a dashboard share an id, and every id is a positive integer."""
    for dash in ALL_DASHBOARDS.values():
        ids = [p["id"] for p in dash["panels"]]
        assert all(isinstance(i, int) and i > 0 for i in ids)
        assert len(ids) == len(set(ids)), dash["uid"]


def test_grid_positions_fit_24_columns_and_do_not_overlap() -> None:
    """Every panel has a gridPos inside the 24-column grid, and no two panels of a dashboard overlap."""
    for dash in ALL_DASHBOARDS.values():
        boxes = []
        for panel in dash["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] > 0 and pos["h"] > 0
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            boxes.append((panel["title"], pos))
        for (t1, a), (t2, b) in combinations(boxes, 2):
            apart = (
                a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
            )  # fmt: skip
            assert apart, f"{dash['uid']}: {t1!r} overlaps {t2!r}"


def test_every_panel_has_a_unit_and_a_description() -> None:
    """Each panel sets fieldConfig.defaults.unit (a known Grafana unit) and a non-empty description."""
    for dash, panel in ((d, p) for d in ALL_DASHBOARDS.values() for p in d["panels"]):
        assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, (dash["uid"], panel["title"])
        assert len(panel.get("description", "")) > 20, (dash["uid"], panel["title"])


def test_ratio_panels_are_bounded_0_to_1() -> None:
    """Panels in percentunit (ratios and scores, 0-1) set min 0 and max 1."""
    for _, panel in panels():
        defaults = panel["fieldConfig"]["defaults"]
        if defaults.get("unit") == "percentunit":
            assert (defaults.get("min"), defaults.get("max")) == (0, 1), panel["title"]


def test_every_query_uses_the_datasource_variable() -> None:
    """Panels, targets and query variables all point at ${datasource}, a variable of type prometheus."""
    for dash in DASHBOARDS.values():
        var = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
        assert var["type"] == "datasource" and var["query"] == "prometheus"
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    for _, panel, target in targets():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert target["expr"].strip() and target["refId"]


def test_every_rate_uses_rate_interval_or_the_aggregation_variable() -> None:
    """Each range window is $__rate_interval, or $aggregation (trailing 1d/7d/30d) on the trends dashboard."""
    seen_rates = 0
    for dash, panel, target in targets():
        expr = target["expr"]
        calls = len(re.findall(r"\b(?:rate|irate|increase|delta|idelta|\w+_over_time)\s*\(", expr))
        found = windows(expr)
        assert len(found) == calls, f"{panel['title']}: every range function needs exactly one window"
        seen_rates += calls
        for window in found:
            if window == AGGREGATION_WINDOW:
                assert panel.get("interval") == build.TRENDS_STEP, panel["title"]
                assert any(v["name"] == build.AGGREGATION_VAR for v in dash["templating"]["list"])
            elif window == RANGE_WINDOW:  # a summary of the whole selected range: instant queries only
                assert target["instant"], f"{panel['title']}: [$__range] outside an instant query"
            else:
                assert window in ALLOWED_WINDOWS, f"{panel['title']}: [{window}]"
    assert seen_rates > 50


def test_metric_scanner_skips_functions_keywords_labels_strings_and_durations() -> None:
    """The PromQL scanner returns only metric names, even from an expression full of look-alikes."""
    expr = (
        'histogram_quantile(0.95, sum by (le, agent) (rate(agent_step_duration_seconds_bucket{step="rate",'
        'agent=~"$agent"}[$__rate_interval] offset 5m))) / ignoring(step) group_left() '
        "(sum without (instance) (up{job='x'}) > bool 0) or vector(0) and on(agent) ALERTS unless time() > 1e3"
    )
    assert metric_names(expr) == {"agent_step_duration_seconds_bucket", "up", "ALERTS"}
    assert windows(expr) == ["$__rate_interval"]


def test_every_metric_a_query_references_is_defined_by_semconv() -> None:
    """Queries select only series the library exposes (semconv, histogram suffixes included), ALERTS or up."""
    for dash, panel, target in targets():
        names = metric_names(target["expr"])
        assert names, (dash["uid"], panel["title"])
        assert names <= ALLOWED_METRICS, (dash["uid"], panel["title"], names - ALLOWED_METRICS)
    for dash in DASHBOARDS.values():
        for var in dash["templating"]["list"]:
            if var["type"] == "query":
                series = re.fullmatch(r"label_values\((.+), *\w+\)", var["definition"])
                assert series and metric_names(series.group(1)) <= ALLOWED_METRICS, var["definition"]


def test_every_library_metric_is_on_some_dashboard() -> None:
    """Each metric family of semconv.METRICS is queried by at least one panel."""
    exprs = [t["expr"] for _, _, t in targets()]
    exprs += [a["expr"] for d in DASHBOARDS.values() for a in d["annotations"]["list"] if "expr" in a]
    used = set().union(*(metric_names(e) for e in exprs))
    missing = [s.name for s in semconv.METRICS if not used & set(semconv.exposed_series_names(s))]
    assert not missing


def test_objective_lines_read_agent_objective() -> None:
    """Every objective target (refId O) is agent_objective for a known objective name, by agent."""
    objective_targets = [t for _, _, t in targets() if t["refId"] == build.OBJ]
    assert len(objective_targets) >= 8
    for target in objective_targets:
        assert metric_names(target["expr"]) == {semconv.OBJECTIVE.name}
        name = re.search(r'objective="(\w+)"', target["expr"])
        assert name and name.group(1) in semconv.DEFAULT_OBJECTIVES


def test_variables_are_multi_value_label_values_and_all_used() -> None:
    """agent (and trigger, tool) come from label_values, allow several values and All (one value on the
    versions dashboard, which compares two versions of one agent); each is used."""
    for dash in DASHBOARDS.values():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert "agent" in variables
        assert variables["agent"]["definition"] == f"label_values({semconv.EXECUTIONS_STARTED.name}, agent)"
        exprs = " ".join(t["expr"] for t in (t for p in dash["panels"] for t in p["targets"]))
        for name, var in variables.items():
            if var["type"] == "query" and (dash["uid"], name) in SINGLE_VALUE:
                assert not var["multi"] and not var["includeAll"] and "allValue" not in var
                assert f"${name}" in exprs, f"{dash['uid']}: ${name} unused"
            elif var["type"] == "query":
                assert var["multi"] and var["includeAll"] and var["allValue"] == ".*"
                assert var["definition"].startswith("label_values(")
                assert f"${name}" in exprs, f"{dash['uid']}: ${name} unused"
            if var["type"] == "custom":
                assert f"${name}" in exprs
        referenced = set(re.findall(r"\$\{?(\w+)", exprs)) - {"__rate_interval", "__range"}
        assert referenced <= set(variables), referenced - set(variables)
    trigger_dashboards = {d["uid"] for d in DASHBOARDS.values() if "$trigger" in json.dumps(d["panels"])}
    assert {"agent-overview", "agent-completion-trends", "agent-runtime"} <= trigger_dashboards


def test_trends_dashboard_offers_daily_weekly_monthly_aggregation() -> None:
    """The completion-trends dashboard has a custom aggregation variable with 1d, 7d and 30d."""
    dash = DASHBOARDS["agent-completion-trends.json"]
    var = next(v for v in dash["templating"]["list"] if v["name"] == build.AGGREGATION_VAR)
    assert var["type"] == "custom"
    assert [o["value"] for o in var["options"]] == ["1d", "7d", "30d"]


def test_histogram_panels_of_the_runtime_dashboard_request_exemplars() -> None:
    """On agent-runtime, every time series or heatmap query over a _bucket series asks for exemplars."""
    dash = DASHBOARDS["agent-runtime.json"]
    checked = 0
    for panel in dash["panels"]:
        for target in panel["targets"]:
            if panel["type"] in {"timeseries", "heatmap"} and "_bucket" in target["expr"]:
                assert target["exemplar"] is True, panel["title"]
                checked += 1
    assert checked >= 5


def test_dashboards_link_to_each_other_and_to_jaeger() -> None:
    """Each dashboard links to the six others (keeping time and variables) and to Jaeger in Explore."""
    for dash in ALL_DASHBOARDS.values():
        urls = {link["url"] for link in dash["links"]}
        others = EXPECTED_UIDS - {dash["uid"]}
        assert {f"/d/{uid}" for uid in others} <= urls
        for link in dash["links"]:
            if link["url"].startswith("/d/"):
                assert link["includeVars"] and link["keepTime"]
        assert any(u.startswith("/explore") and "jaeger" in u for u in urls)


@pytest.mark.servers
def test_promql_parses_with_promtool(tmp_path: Path) -> None:
    """Every substituted panel query is valid PromQL for promtool (run as recording rule expressions)."""
    promtool = require_binary("promtool")  # skips locally without it, fails under CI
    rules = [{"record": f"dashboard:query:{i}", "expr": q.expr} for i, q in enumerate(build.iter_all_queries())]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- iter_queries


def test_iter_all_queries_leaves_the_sql_dashboard_out() -> None:
    """iter_all_queries (PromQL, for Prometheus) covers exactly the Prometheus dashboards."""
    assert {q.dashboard_uid for q in build.iter_all_queries()} == PROMETHEUS_UIDS


def test_iter_queries_yields_every_panel_query_with_variables_substituted() -> None:
    """iter_queries yields one query per target of every panel, with no `$` left in any expression."""
    for dash in DASHBOARDS.values():
        queries = list(build.iter_queries(dash))
        assert len(queries) == sum(len(p["targets"]) for p in dash["panels"])
        assert {q.panel_id for q in queries} == {p["id"] for p in dash["panels"]}
        for q in queries:
            assert q.dashboard_uid == dash["uid"]
            assert "$" not in q.expr, q.expr
            assert q.step is None or "$" not in q.step


def test_iter_queries_inserts_the_given_agent_and_variables() -> None:
    """Given agent, trigger and aggregation values land in the expressions and the step."""
    dash = DASHBOARDS["agent-completion-trends.json"]
    queries = list(build.iter_queries(dash, agent="invoice", trigger="email|timer", variables={"aggregation": "7d"}))
    assert all('agent=~"invoice"' in q.expr for q in queries)
    assert any('trigger=~"email|timer"' in q.expr for q in queries)
    assert any("[7d]" in q.expr for q in queries)
    assert {q.step for q in queries} == {build.TRENDS_STEP}


def test_substitute_refuses_an_unknown_variable() -> None:
    """A variable with no value raises KeyError instead of reaching Prometheus as `$name`."""
    with pytest.raises(KeyError):
        build.substitute("rate(x[$nope])", {"agent": ".*"})
    assert build.substitute('a{x=~"${agent:regex}"}[$__rate_interval]', {"agent": "b", "__rate_interval": "1m"}) == (
        'a{x=~"b"}[1m]'
    )


# --------------------------------------------------------------------------- provisioning


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def datasources() -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in load_yaml(DATASOURCES_FILE)["datasources"]}


def test_provisioning_files_are_yaml_with_api_version_1() -> None:
    """Both provisioning files parse as YAML mappings with apiVersion 1."""
    assert load_yaml(DATASOURCES_FILE)["apiVersion"] == 1
    assert load_yaml(PROVIDERS_FILE)["apiVersion"] == 1


def test_datasources_use_documented_keys_and_fixed_uids() -> None:
    """Prometheus, Jaeger and Alertmanager have their fixed uids, types, a URL, proxy access, documented keys."""
    found = datasources()
    assert {uid: ds["type"] for uid, ds in found.items()} == DATASOURCE_UIDS
    for ds in found.values():
        assert set(ds) <= DATASOURCE_KEYS, set(ds) - DATASOURCE_KEYS
        assert isinstance(ds["name"], str) and ds["name"]
        assert ds["access"] == "proxy"
        # PostgreSQL's URL is host:port; the HTTP data sources' is a URL.
        url = r"[a-z]+:\d+" if ds["type"] == "grafana-postgresql-datasource" else r"http://[a-z]+:\d+"
        assert re.fullmatch(url, ds["url"])
        assert isinstance(ds.get("jsonData", {}), dict)
    assert found["agent-tasks"]["url"] == "postgres:5432"
    assert found["prometheus"]["url"] == "http://prometheus:9090"
    assert found["jaeger"]["url"] == "http://jaeger:16686"
    assert found["alertmanager"]["url"] == "http://alertmanager:9093"
    assert found["alertmanager"]["jsonData"]["implementation"] == "prometheus"
    assert [uid for uid, ds in found.items() if ds.get("isDefault")] == ["prometheus"]


def test_prometheus_exemplar_link_names_the_jaeger_datasource_uid() -> None:
    """exemplarTraceIdDestinations maps the library's trace_id exemplar label to the Jaeger datasource uid."""
    found = datasources()
    destinations = found["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert isinstance(destinations, list) and len(destinations) == 1
    (dest,) = destinations
    assert dest["name"] == semconv.EXEMPLAR_TRACE_ID
    assert dest["datasourceUid"] in found and found[dest["datasourceUid"]]["type"] == "jaeger"
    assert "url" not in dest  # an internal link: datasourceUid, not an external URL


def test_dashboard_provider_reads_the_mounted_dashboards() -> None:
    """One file provider with documented keys reads /var/lib/grafana/dashboards, where ./dashboards is mounted."""
    providers = load_yaml(PROVIDERS_FILE)["providers"]
    assert len(providers) == 1
    (provider,) = providers
    assert set(provider) <= PROVIDER_KEYS and set(provider["options"]) <= PROVIDER_OPTION_KEYS
    assert isinstance(provider["name"], str) and provider["name"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_MOUNT
    assert isinstance(provider["updateIntervalSeconds"], int)
    if provider["options"].get("foldersFromFilesStructure"):
        assert not provider.get("folder") and not provider.get("folderUid")


# --------------------------------------------------------------------------- docs


def test_docs_name_every_dashboard_and_panel() -> None:
    """docs/dashboards.md names every dashboard uid and every panel title."""
    text = (ROOT / "docs" / "dashboards.md").read_text(encoding="utf-8")
    for dash in ALL_DASHBOARDS.values():
        assert f"`{dash['uid']}`" in text
        for panel in dash["panels"]:
            assert panel["title"] in text, panel["title"]


def test_readme_lists_every_dashboard() -> None:
    """The README's Dashboards section names each dashboard (title and uid)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Dashboards\n", 1)[1].split("\n## ", 1)[0]
    for dash in ALL_DASHBOARDS.values():
        assert dash["title"] in section and dash["uid"] in section


def test_the_stuck_pending_alert_opens_the_tasks_dashboards_waiting_list() -> None:
    """alert_rules keeps the waiting list's panel id as a constant (rendering needs no dashboards):
    it is the id the Tasks dashboard gives that panel, and the alert's link uses it."""
    from alert_rules import alerts
    from alert_rules.rules import Params

    (waiting,) = [p for p in build.tasks()["panels"] if p["title"] == build.WAITING_TITLE]
    assert waiting["id"] == alerts.WAITING_PANEL_ID
    (rule,) = [r for r in alerts.alerting_rules(Params()) if r["alert"] == "AgentTasksStuckPending"]
    assert rule["annotations"]["dashboard_url"].split("&viewPanel=")[1] == f"panel-{waiting['id']}"


@pytest.mark.parametrize("argv", [["dashboards/build.py", "--check"], ["-m", "dashboards.build", "--check"]])
def test_committed_json_is_current_whichever_way_the_generator_is_run(argv: list[str]) -> None:
    """`python dashboards/build.py` (a script: the repository root is put on the path) and
    `python -m dashboards.build` both run, and find the committed JSON current."""
    result = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split()
)}  # fmt: skip
# A count of dashboards in prose, and what it must equal (a function of the generator's lists).
COUNT_PHRASES = (
    (r"\b(\w+) (?:Grafana 11\.6 )?dashboards (?:in|for)\b", lambda n, p: n),
    (r"\b(\w+) on Prometheus\b", lambda n, p: p),
    (r"\b(\w+) Prometheus dashboards\b", lambda n, p: p),
    (r"\bthe (\w+) others\b", lambda n, p: n - 1),
)


@pytest.mark.parametrize("doc", ["README.md", "docs/dashboards.md"])
def test_docs_count_and_list_exactly_the_dashboards_in_the_repository(doc: str) -> None:
    """Every count of dashboards in the prose is true, and the list names exactly the dashboards/ JSON files."""
    on_disk = {p.stem for p in DASHBOARD_DIR.glob("*.json")}
    assert on_disk == set(build.BUILDERS)
    n, p = len(on_disk), len(build.PROMETHEUS_DASHBOARDS)
    text = (ROOT / doc).read_text(encoding="utf-8")
    if doc == "README.md":
        text = text.split("\n## Dashboards\n", 1)[1].split("\n## ", 1)[0]
        listed = set(re.findall(r"^\| [^|]+ \| `([a-z-]+)` \|", text, re.M))
    else:
        listed = set(re.findall(r"^## [^\n]+ \(`([a-z-]+)`\)$", text, re.M))
    assert listed == on_disk
    counts = [(m.group(0), NUMBER_WORDS[m.group(1).lower()], want(n, p))
              for pattern, want in COUNT_PHRASES for m in re.finditer(pattern, text, re.I)
              if m.group(1).lower() in NUMBER_WORDS]  # fmt: skip
    assert counts, "no count of dashboards found"
    assert [c for c in counts if c[1] != c[2]] == []
