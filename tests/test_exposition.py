"""The library's OpenMetrics encoder and /metrics app (issue 6): prometheus_client's bytes, faster.

Every check compares with prometheus_client itself: `generate_openmetrics(registry)` against the
OpenMetrics `generate_latest(registry)`, and the served app against `make_wsgi_app(registry)`.
Where the fast path must not run (a UTF-8 name, an info family, a native histogram), the result
must still be upstream's, by falling back.
"""

from __future__ import annotations

import gzip
import io
import math
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as upstream_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.samples import Exemplar, NativeHistogram, Timestamp

import exporter
from exporter import testing
from exporter.pipeline import exposition
from exporter.pipeline.exposition import ALLOWUTF8, UNDERSCORES, generate_openmetrics
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not exposition._FAST, reason="prometheus_client version not verified: upstream only")

PROPS = settings(
    max_examples=80,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

OM_ACCEPT = "application/openmetrics-text; version=1.0.0"
PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


def fast(registry: Any, escaping: str = UNDERSCORES) -> bytes:
    """The fast path alone (raises where generate_openmetrics would fall back)."""
    return exposition._render(list(registry.collect()), escaping)


def assert_same(registry: Any, *, fast_path: bool) -> bytes:
    """generate_openmetrics == upstream for both escaping schemes; the fast path ran iff fast_path."""
    out = b""
    for escaping in (UNDERSCORES, ALLOWUTF8):
        expected = upstream_openmetrics(registry, escaping=escaping)
        assert generate_openmetrics(registry, escaping=escaping) == expected
        if fast_path:
            assert fast(registry, escaping) == expected
        else:
            with pytest.raises(exposition._Unusual):
                fast(registry, escaping)
        if escaping == UNDERSCORES:
            out = expected
    return out


# ------------------------------------------------------------------------------ the library's registry


@contextmanager
def rich_workload() -> Iterator[None]:
    """Every kind of execution the library records, over several agents, with hostile names; inside,
    one execution is still pending (its gauges have a live series)."""
    agents = ["invoice", "support-bot", 'q"uo\\te\nagent', "日本語 agent 🤖", "x" * 300]
    for k, agent in enumerate(agents):
        with exporter.execution(agent, trigger="email" if k % 2 else "api", task_id=f"T-{k}") as run:
            for i, tool in enumerate(["search", "ocr{x=1}", "calc,\n"]):
                with run.step(f"step {i} {agent}", tool=tool) as step:
                    with step.tool_call(tool):
                        pass
                    step.evaluate("accuracy", score=0.5 + i / 10)
                    step.record_usage(input_tokens=100 * i, output_tokens=7)
                    step.record_input({"q": "hello", "api_key": "sk-123"})
                    step.record_output("done")
        with exporter.execution(agent, trigger="cron", task_id=f"F-{k}") as run:
            with run.step("failing", tool="broken") as step:
                with pytest.raises(exporter.ToolError), step.tool_call("broken"):
                    raise exporter.ToolError("no answer")
            run.fail("error", "gave up")
        with pytest.raises(RuntimeError), exporter.execution(agent, trigger="api", task_id=f"E-{k}"):
            raise RuntimeError("boom")
        with exporter.execution(agent, trigger="api", task_id=f"C-{k}") as run:
            run.cancel("user")
    with exporter.execution("queue-agent", trigger="api", task_id="P-1", pending="approval"):
        time.sleep(0.01)
        yield


def test_library_registry_renders_the_same_bytes_through_the_fast_path() -> None:
    with testing.capture(objectives={"invoice": {"completion_ratio": 0.9}}) as cap:
        with rich_workload():
            out = assert_same(cap.registry, fast_path=True)
    text = out.decode()
    assert text.endswith("# EOF\n") and ' # {trace_id="' in text  # exemplars are there
    assert '\\"uo\\\\te\\nagent' in text  # a label value that needs every escape
    names = {f.name for f in parse_openmetrics(text)}
    assert {"agent_executions_started", "agent_step_duration_seconds", "agent_exporter_dropped"} <= names


def test_library_registry_with_many_series_and_fallback_free() -> None:
    """Several thousand series: still byte-identical, and never handed to upstream."""
    with testing.capture(max_label_values=500, max_agents=50) as cap:
        for a in range(4):
            with exporter.execution(f"agent-{a}", trigger="api") as run:
                for i in range(60):
                    with run.step(f"step_{i}", tool=f"tool_{i}") as step, step.tool_call(f"tool_{i}"):
                        step.evaluate("accuracy", score=0.9)
        assert_same(cap.registry, fast_path=True)


# ------------------------------------------------------------------------------ raw prometheus_client registries

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
NASTY = st.sampled_from(['"', "\\", "\n", "\r", "\t", "{", "}", "=", ",", "#", " ", "é", "🤖", "\u202e", "\\n", '\\"'])
VALUES = st.lists(st.one_of(st.characters(), NASTY, SURROGATE), max_size=20).map("".join)
CLEAN_VALUES = st.lists(st.one_of(st.characters(blacklist_categories=("Cs",)), NASTY), max_size=20).map("".join)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**20), 10**20), st.sampled_from([1e-320, 1e22])
)


def raw_registry(values: list[str], docs: str, numbers: list[float], exemplar_value: str) -> CollectorRegistry:
    reg = CollectorRegistry()
    c = Counter("jobs", docs, ["kind", "where"], registry=reg)
    g = Gauge("temp:celsius", docs, ["kind"], registry=reg, unit="celsius")
    h = Histogram("latency_seconds", "h", ["kind"], registry=reg, buckets=(0.1, 1, 10, float("inf")))
    s = Summary("size_bytes", "s", ["kind"], registry=reg)
    plain = Gauge("plain", "no labels", registry=reg)
    for i, v in enumerate(values):
        n = numbers[i % len(numbers)] if numbers else 1.0
        if n >= 0 and not math.isnan(n):
            c.labels(kind=v, where=str(i)).inc(n, exemplar={"trace_id": exemplar_value} if i % 2 else None)
        g.labels(kind=v).set(n)
        if math.isfinite(n):
            h.labels(kind=v).observe(n, exemplar={"why": exemplar_value, "n": v[:10]} if i % 3 == 0 else None)
            s.labels(kind=v).observe(n)
    plain.set(numbers[0] if numbers else 0)
    return reg


def same_or_same_error(registry: Any, escaping: str) -> None:
    try:
        expected: bytes | type[BaseException] = upstream_openmetrics(registry, escaping=escaping)
    except Exception as exc:  # noqa: BLE001 - e.g. a lone surrogate cannot be encoded
        expected = type(exc)
    try:
        got: bytes | type[BaseException] = generate_openmetrics(registry, escaping=escaping)
    except Exception as exc:  # noqa: BLE001
        got = type(exc)
    assert got == expected


@PROPS
@given(
    values=st.lists(VALUES, min_size=1, max_size=6),
    docs=VALUES,
    numbers=st.lists(NUMBERS, max_size=4),
    exemplar_value=VALUES.map(lambda v: v[:20]),
)
def test_hostile_label_values_help_and_numbers_match_upstream(
    values: list[str], docs: str, numbers: list[float], exemplar_value: str
) -> None:
    """Unicode, quotes, backslashes, newlines, braces, lone surrogates (upstream raises: so do we)."""
    try:
        reg = raw_registry(values, docs, numbers, exemplar_value)
    except ValueError:  # prometheus_client refuses some exemplars (too long) itself
        return
    for escaping in (UNDERSCORES, ALLOWUTF8):
        same_or_same_error(reg, escaping)


@PROPS
@given(values=st.lists(CLEAN_VALUES, min_size=1, max_size=6), docs=CLEAN_VALUES, numbers=st.lists(NUMBERS, max_size=4))
def test_encodable_hostile_values_take_the_fast_path(values: list[str], docs: str, numbers: list[float]) -> None:
    try:
        reg = raw_registry(values, docs, numbers, "abc")
    except ValueError:
        return
    assert_same(reg, fast_path=True)


def test_empty_registry() -> None:
    reg = CollectorRegistry()
    assert assert_same(reg, fast_path=True) == b"# EOF\n"


def test_timestamps_units_and_a_colon_in_a_sample_name() -> None:
    """Upstream writes `a:b` as `a_b` on sample lines (underscores) but not in # HELP: reproduced."""
    reg = CollectorRegistry()

    class Custom:
        def collect(self) -> Iterable[Metric]:
            c = CounterMetricFamily("ns:ops", "ops", labels=["k"], unit="ops")
            c.add_metric(["v"], 3.0, timestamp=1700000000.25)
            c.add_metric(["w"], 4.0, timestamp=Timestamp(1700000000, 5))
            c.add_metric(["x"], 5.0, created=1699999999.0, exemplar=Exemplar({"trace_id": 'a"b'}, 1.0, 1700000000.5))
            yield c
            g = GaugeMetricFamily("g", 'help with \\ and \n and "', labels=[])
            g.add_metric([], 1e22)
            yield g

    reg.register(Custom())  # type: ignore[arg-type]
    out = assert_same(reg, fast_path=True).decode()
    assert "\nns_ops_ops_total{" in out and "# HELP ns:ops_ops " in out  # the unit is appended


# ------------------------------------------------------------------------------ what falls back


def registry_with(*collectors: Callable[[CollectorRegistry], Any]) -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("ordinary", "an ordinary counter", ["k"], registry=reg).labels(k="v").inc()
    for make in collectors:
        make(reg)
    return reg


def _custom(reg: CollectorRegistry, *families: Metric) -> None:
    class C:
        def collect(self) -> Iterable[Metric]:
            return list(families)

    reg.register(C())  # type: ignore[arg-type]


def _native(reg: CollectorRegistry) -> None:
    h = HistogramMetricFamily("nh_seconds", "native")
    h.add_sample(
        "nh_seconds",
        {},
        None,  # type: ignore[arg-type]
        None,
        None,
        NativeHistogram(24, 100, 0, 0.001, 4, ((0, 2), (1, 2)), ((0, 2),), (2, 1, -3, 3), (2, 1)),
    )
    _custom(reg, h)


def _non_legacy_label(reg: CollectorRegistry) -> None:
    g = GaugeMetricFamily("g", "g", labels=["__reserved"])
    g.add_metric(["x"], 1)
    _custom(reg, g)


def _gauge_histogram(reg: CollectorRegistry) -> None:
    _custom(reg, GaugeHistogramMetricFamily("gh", "gh", buckets=[("1.0", 4), ("+Inf", 5)], gsum_value=7))


@pytest.mark.parametrize(
    "make",
    [
        lambda reg: Gauge("my.metric", "a UTF-8 metric name", ["k"], registry=reg).labels(k="v").set(1),
        lambda reg: Gauge("g", "a UTF-8 label name", ["ключ"], registry=reg).labels("v").set(1),
        lambda reg: Info("build", "an info metric", registry=reg).info({"version": "1.2", "commit": 'a"b'}),
        lambda reg: Enum("state", "a stateset", states=["up", "down"], registry=reg).state("down"),
        _gauge_histogram,
        _native,
        _non_legacy_label,
    ],
    ids=["utf8-metric-name", "utf8-label-name", "info", "stateset", "gaugehistogram", "native-histogram", "__label"],
)
def test_unusual_families_fall_back_to_upstream_for_the_whole_registry(make: Callable[..., Any]) -> None:
    reg = registry_with(make)
    assert_same(reg, fast_path=False)
    for version in ("1.0.0", "2.0.0"):
        assert generate_openmetrics(reg, version=version) == upstream_openmetrics(reg, version=version)


def test_an_error_in_the_fast_path_falls_back_and_upstream_decides() -> None:
    """A label value that is not a str: upstream raises, and so does generate_openmetrics (its error)."""
    g = GaugeMetricFamily("g", "g", labels=["k"])
    g.add_metric([5], 1)  # type: ignore[list-item]
    reg = registry_with(lambda r: _custom(r, g))
    for escaping in (UNDERSCORES, ALLOWUTF8):
        same_or_same_error(reg, escaping)
    with pytest.raises(AttributeError):
        generate_openmetrics(reg)


def test_other_escaping_schemes_are_upstreams() -> None:
    reg = registry_with()
    for escaping in ("dots", "values"):
        assert generate_openmetrics(reg, escaping=escaping) == upstream_openmetrics(reg, escaping=escaping)


# ------------------------------------------------------------------------------ the served endpoint


def call(app: Callable[..., Iterable[bytes]], accept: str | None = None, **environ: str) -> tuple[str, list, bytes]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "wsgi.input": io.BytesIO()}
    if accept is not None:
        env["HTTP_ACCEPT"] = accept
    env.update(environ)
    setup_testing_defaults(env)
    seen: list[Any] = []
    body = b"".join(app(env, lambda status, headers, exc_info=None: seen.extend([status, headers])))
    return seen[0], seen[1], body


ACCEPTS = [
    None,
    "",
    "text/plain",
    "text/plain;version=1.0.0",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    OM_ACCEPT,
    "application/openmetrics-text",
    "application/openmetrics-text; version=0.0.1",
    "application/openmetrics-text; version=0.0.1, text/plain",
    "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; escaping=dots",
    "application/openmetrics-text; version=1.0.0; escaping=values",
    "application/openmetrics-text; version=2.0.0",
    PROMETHEUS_2_ACCEPT,
    PROMETHEUS_3_ACCEPT,
    "*/*",
]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("encoding", [None, "gzip", "br, gzip;q=0.5", "identity"])
def test_metrics_app_answers_as_upstream(accept: str | None, encoding: str | None) -> None:
    with testing.capture() as cap:
        ours, theirs = exporter.metrics_app(), make_wsgi_app(cap.registry)
        extra = {"HTTP_ACCEPT_ENCODING": encoding} if encoding else {}
        with rich_workload():
            status, headers, body = call(ours, accept, **extra)
            status_u, headers_u, body_u = call(theirs, accept, **extra)
    assert (status, headers) == (status_u, headers_u)
    if encoding and "gzip" in encoding:
        assert ("Content-Encoding", "gzip") in headers
        body, body_u = gzip.decompress(body), gzip.decompress(body_u)
    assert body == body_u


def test_metrics_app_other_requests_are_upstreams() -> None:
    with testing.capture() as cap:
        with rich_workload():
            pass
        ours, theirs = exporter.metrics_app(), make_wsgi_app(cap.registry)
        for method, path, query in [
            ("OPTIONS", "/metrics", ""),
            ("POST", "/metrics", ""),
            ("HEAD", "/metrics", ""),
            ("GET", "/favicon.ico", ""),
            ("GET", "/metrics", "name[]=agent_executions_started_total&name[]=agent_step_duration_seconds_bucket"),
            ("GET", "/metrics", "name[]=nothing"),
        ]:
            env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
            assert call(ours, OM_ACCEPT, **env) == call(theirs, OM_ACCEPT, **env)
        _, _, restricted = call(ours, OM_ACCEPT, QUERY_STRING="name[]=agent_executions_started_total")
        assert b"agent_executions_started_total{" in restricted and b"agent_step_duration" not in restricted


def test_served_endpoint_speaks_openmetrics_text_and_gzip() -> None:
    """Over HTTP: the same content type and bytes as upstream for each Accept header."""
    port = free_port()
    reg = testing.fresh_registry()
    exporter.configure("exposition", metrics_port=port, metrics_addr="127.0.0.1", registry=reg, tracing=False)
    with rich_workload():
        pass
    upstream = make_wsgi_app(reg)

    def get(accept: str | None, encoding: str | None = None) -> tuple[str, str | None, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
        if accept is not None:
            req.add_header("Accept", accept)
        if encoding is not None:
            req.add_header("Accept-Encoding", encoding)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.headers["Content-Type"], r.headers["Content-Encoding"], r.read()

    for accept in (OM_ACCEPT, PROMETHEUS_2_ACCEPT, PROMETHEUS_3_ACCEPT, None, "text/plain;version=1.0.0"):
        for encoding in (None, "gzip"):
            content_type, content_encoding, body = get(accept, encoding)
            _, headers_u, body_u = call(upstream, accept, **({"HTTP_ACCEPT_ENCODING": encoding} if encoding else {}))
            assert content_type == dict(headers_u)["Content-Type"]
            assert content_encoding == dict(headers_u).get("Content-Encoding")
            if encoding:
                body, body_u = gzip.decompress(body), gzip.decompress(body_u)
            assert body == body_u
            if accept and "openmetrics" in accept:
                assert content_type.startswith("application/openmetrics-text; version=1.0.0")
                assert body.endswith(b"# EOF\n")
            else:
                assert content_type.startswith("text/plain") and b"# EOF" not in body


def test_a_tls_failure_leaves_the_port_free(tmp_path: Any) -> None:
    """Unlike upstream's start_http_server, a certificate that cannot be loaded does not keep the port bound."""
    port = free_port()
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(OSError, match="Cannot load server certificate"):
        exposition.start_metrics_server(port, "127.0.0.1", CollectorRegistry(), certfile=missing, keyfile=missing)
    server, thread = exposition.start_metrics_server(port, "127.0.0.1", CollectorRegistry())
    try:
        assert thread.is_alive() and server.server_address[1] == port
    finally:
        server.shutdown()
        server.server_close()
