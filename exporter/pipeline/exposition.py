"""/metrics as prometheus_client serves it, with a faster OpenMetrics encoder (issue 6).

prometheus_client 0.26's OpenMetrics `generate_latest` escapes every sample's metric name one
character at a time in Python (`_escape(s.name, UNDERSCORES, ...)`), which made OpenMetrics about
1.5x the text format: 122 ms for 10k series. `generate_openmetrics` is a port of that function that
produces the same bytes, with the names escaped once per distinct name (cached) instead of once per
sample line. Everything else is upstream's own code: HELP text and label values go through the
same `str.replace` escaping, values through `floatToGoString`, exemplars through
`_compose_exemplar_string`.

Correctness first: the fast path only runs on a prometheus_client version whose encoder it was
checked against (`VERIFIED_VERSIONS`), and only for what it knows: counter, gauge, histogram,
summary and unknown families with legacy-valid names (`[a-zA-Z_:][a-zA-Z0-9_:]*` metrics,
`[a-zA-Z_][a-zA-Z0-9_]*` labels), no native histograms, escaping `underscores` or `allow-utf-8`.
Anything else (an info / stateset / gaugehistogram family, a UTF-8 name, any error at all) renders
the whole registry with upstream's `generate_latest` from the same collected families. Nothing in
prometheus_client is patched: the host application's own use of it is unchanged.

`make_metrics_app` serves it (same responses as `prometheus_client.make_wsgi_app` otherwise), and
`start_metrics_server` is `prometheus_client.start_http_server` serving that app.
"""

from __future__ import annotations

import gzip
import inspect
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client import exposition as _px
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as _om
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

try:  # not in prometheus_client 0.20 (no fast path there: upstream encoder only)
    from prometheus_client.validation import _is_valid_legacy_labelname, _is_valid_legacy_metric_name
except ImportError:  # pragma: no cover - exercised with an old prometheus_client only
    _is_valid_legacy_labelname = _is_valid_legacy_metric_name = None  # type: ignore[assignment]

__all__ = ["VERIFIED_VERSIONS", "generate_openmetrics", "make_metrics_app", "start_metrics_server"]

# prometheus_client minor versions whose OpenMetrics encoder this port reproduces byte for byte
# (the encoder changed shape between 0.20 and 0.26: label order, escaping schemes, native
# histograms). On any other version every call goes to upstream's own encoder.
VERIFIED_VERSIONS: tuple[tuple[int, int], ...] = ((0, 26),)

UNDERSCORES: str = getattr(_om, "UNDERSCORES", "underscores")
ALLOWUTF8: str = getattr(_om, "ALLOWUTF8", "allow-utf-8")
_ESCAPINGS = (UNDERSCORES, ALLOWUTF8)
# Families whose samples upstream renders with no type-specific code beyond the exemplar check.
_PLAIN_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "unknown"})
_CACHE_LIMIT = 8192  # distinct names per cache; past it the cache starts over
# upstream's label-value escaping: _escape(v, ALLOWUTF8, ...) is these three str.replace calls
_BS, _BS_ESC, _NL, _NL_ESC, _QUOTE, _QUOTE_ESC = "\\", r"\\", "\n", r"\n", '"', r"\""


def _installed_minor() -> tuple[int, int] | None:
    try:
        parts = _dist_version("prometheus-client").split(".")
        return int(parts[0]), int(parts[1])
    except (PackageNotFoundError, ValueError, IndexError):
        return None


def _fast_available() -> bool:
    helpers = (
        "_escape",
        "_compose_exemplar_string",
        "_is_legacy_labelname_rune",
        "escape_metric_name",
        "escape_label_name",
        "UNDERSCORES",
        "ALLOWUTF8",
    )
    if _installed_minor() not in VERIFIED_VERSIONS or _is_valid_legacy_metric_name is None:
        return False
    if not all(hasattr(_om, h) for h in helpers):
        return False
    try:  # the encoder this module ports, by its signature
        return list(inspect.signature(_om.generate_latest).parameters) == ["registry", "escaping", "version"]
    except (TypeError, ValueError):
        return False


_FAST = _fast_available()

# upstream's (untyped) helpers, called as they are
_float_to_go: Callable[[float], str] = floatToGoString
_upstream_openmetrics: Callable[..., bytes] = _om.generate_latest


class _Unusual(Exception):
    """Something the fast path does not render itself: upstream renders the whole registry."""


class _Collected:
    """Families already collected, offered to upstream's encoder as a registry."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


# Per escaping scheme: name -> exactly what upstream's helper returns for it (pure functions of
# the name, so computing them once per name changes nothing in the output).
_metric_names: dict[str, dict[str, str]] = {e: {} for e in _ESCAPINGS}
_sample_names: dict[str, dict[str, str]] = {e: {} for e in _ESCAPINGS}
_label_names: dict[str, dict[str, str]] = {e: {} for e in _ESCAPINGS}


def _remember(cache: dict[str, str], name: str, rendered: str) -> str:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[name] = rendered
    return rendered


def _metric_name(name: str, escaping: str) -> str:
    """`escape_metric_name(name, escaping)` for a legacy-valid family name (# HELP / TYPE / UNIT)."""
    if not isinstance(name, str) or not _is_valid_legacy_metric_name(name):
        raise _Unusual(name)
    return _remember(_metric_names[escaping], name, _om.escape_metric_name(name, escaping))


def _sample_name(name: str, escaping: str) -> str:
    """What upstream writes for a legacy-valid sample name: `_escape(name, escaping, label rune)`."""
    if not isinstance(name, str) or not _is_valid_legacy_metric_name(name):
        # allow-utf-8 moves such a name inside the braces; not the fast path's business
        raise _Unusual(name)
    return _remember(_sample_names[escaping], name, _om._escape(name, escaping, _om._is_legacy_labelname_rune))


def _label_name(name: str, escaping: str) -> str:
    """`escape_label_name(name, escaping)` for a legacy-valid label name."""
    if not isinstance(name, str) or not _is_valid_legacy_labelname(name):
        raise _Unusual(name)
    rendered = _om.escape_label_name(name, escaping)
    if not rendered:
        raise _Unusual(name)
    return _remember(_label_names[escaping], name, rendered)


def _render(metrics: Iterable[Metric], escaping: str) -> bytes:
    """The fast path. Raises `_Unusual` (or anything) where upstream must render instead."""
    if escaping not in _ESCAPINGS:
        raise _Unusual(escaping)
    metric_names, sample_names, label_names = _metric_names[escaping], _sample_names[escaping], _label_names[escaping]
    help_escape, help_rune = _om._escape, _om._is_legacy_labelname_rune
    compose_exemplar: Callable[[Metric, Any, Any], str] = _om._compose_exemplar_string
    output: list[str] = []
    append = output.append
    for metric in metrics:
        mtype = metric.type
        if mtype not in _PLAIN_TYPES:
            raise _Unusual(mtype)
        mname = metric.name
        hname = metric_names.get(mname) or _metric_name(mname, escaping)
        # upstream: _escape(documentation, ALLOWUTF8, ...), i.e. backslash, newline and '"'
        append(f"# HELP {hname} {help_escape(metric.documentation, ALLOWUTF8, help_rune)}\n")
        append(f"# TYPE {hname} {mtype}\n")
        if metric.unit:
            append(f"# UNIT {hname} {metric.unit}\n")
        for s in metric.samples:
            name, labels, value, timestamp, exemplar, native = s
            if native:
                raise _Unusual("native histogram")
            sname = sample_names.get(name) or _sample_name(name, escaping)
            if labels:
                # label values always allow UTF-8 upstream: _escape(v, ALLOWUTF8, ...)
                labelstr = (
                    "{"
                    + ",".join(
                        [
                            f'{label_names.get(k) or _label_name(k, escaping)}="'
                            f'{v.replace(_BS, _BS_ESC).replace(_NL, _NL_ESC).replace(_QUOTE, _QUOTE_ESC)}"'
                            for k, v in sorted(labels.items())
                        ]
                    )
                    + "}"
                )
            else:
                labelstr = ""
            append(
                f"{sname}{labelstr} {'' if value is None else _float_to_go(value)}"
                f"{'' if timestamp is None else f' {timestamp}'}"
                f"{compose_exemplar(metric, s, exemplar) if exemplar else ''}\n"
            )
    append("# EOF\n")
    return "".join(output).encode("utf-8")


def _upstream_parameters() -> frozenset[str]:
    try:
        return frozenset(inspect.signature(_upstream_openmetrics).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return frozenset()


_UPSTREAM_PARAMETERS = _upstream_parameters()


def _upstream(registry: Any, escaping: str, version: str) -> bytes:
    """Upstream's OpenMetrics encoder, given the options its version knows (older ones take none)."""
    options = {"escaping": escaping, "version": version}
    return _upstream_openmetrics(registry, **{k: v for k, v in options.items() if k in _UPSTREAM_PARAMETERS})


def generate_openmetrics(registry: Collector, escaping: str = UNDERSCORES, version: str = "1.0.0") -> bytes:
    """prometheus_client's OpenMetrics `generate_latest(registry, escaping, version)`, same bytes, faster.

    Falls back to upstream's encoder for the whole registry on anything the fast path does not
    handle itself (see the module docstring), and on any error in the fast path.
    """
    if not _FAST:
        return _upstream(registry, escaping, version)
    metrics = list(registry.collect())
    try:
        return _render(metrics, escaping)
    except Exception:  # noqa: BLE001 - upstream renders (or raises) instead
        return _upstream(_Collected(metrics), escaping, version)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _openmetrics_choice(accept: str | None) -> tuple[str, str, str] | None:
    """(escaping, version, content type) when upstream would answer with its OpenMetrics encoder
    for this Accept header in a scheme the fast path renders; None otherwise."""
    encoder, content_type = _px.choose_encoder(accept or "")
    if not (
        isinstance(encoder, partial)
        and encoder.func is _om.generate_latest
        and not encoder.args
        and set(encoder.keywords) <= {"escaping", "version"}
        and content_type.startswith("application/openmetrics-text")
    ):
        return None
    escaping = encoder.keywords.get("escaping", UNDERSCORES)
    version = encoder.keywords.get("version", "1.0.0")
    if escaping not in _ESCAPINGS or not isinstance(version, str):
        return None
    return escaping, version, content_type


def make_metrics_app(registry: CollectorRegistry, disable_compression: bool = False) -> WSGIApp:
    """`prometheus_client.make_wsgi_app(registry)`, with OpenMetrics rendered by `generate_openmetrics`.

    A GET whose Accept header makes upstream choose OpenMetrics (`choose_encoder`) gets the same
    status, headers (content type, gzip when accepted) and bytes upstream would send; every other
    request (text format, OPTIONS, other methods, /favicon.ico, other escaping schemes) is answered
    by upstream's app itself.
    """
    upstream = make_wsgi_app(registry, disable_compression=disable_compression)
    if not _FAST:
        return upstream

    def metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO", "/favicon.ico") != "/favicon.ico":
            choice = _openmetrics_choice(environ.get("HTTP_ACCEPT"))
            if choice is not None:
                escaping, version, content_type = choice
                reg: Collector = registry
                params = parse_qs(environ.get("QUERY_STRING", ""))
                if "name[]" in params:
                    reg = registry.restricted_registry(params["name[]"])
                output = generate_openmetrics(reg, escaping=escaping, version=version)
                headers = [("Content-Type", content_type)]
                if not disable_compression and _px.gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
                    output = gzip.compress(output)
                    headers.append(("Content-Encoding", "gzip"))
                start_response("200 OK", headers)
                return [output]
        return upstream(environ, start_response)  # type: ignore[no-any-return]

    return metrics


def start_metrics_server(
    port: int,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
    client_auth_required: bool = False,
) -> tuple[WSGIServer, threading.Thread]:
    """`prometheus_client.start_http_server(...)` serving `make_metrics_app(registry)`.

    Built as upstream's `start_wsgi_server` builds it (its threading server, silent handler,
    address family and TLS context helpers), so binding, TLS and mutual TLS behave the same and
    raise the same `OSError`s; a server whose TLS set-up fails is closed rather than left bound.
    """
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY

    class _Server(_px.ThreadingWSGIServer):
        """A copy of upstream's ThreadingWSGIServer, its address family set for this address."""

    _Server.address_family, addr = _px._get_best_family(addr, port)  # type: ignore[no-untyped-call]
    httpd = make_server(addr, port, make_metrics_app(registry), _Server, handler_class=_px._SilentHandler)
    if certfile and keyfile:
        try:
            context = _px._get_ssl_ctx(
                certfile, keyfile, ssl.PROTOCOL_TLS_SERVER, client_cafile, None, client_auth_required
            )
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        except BaseException:
            httpd.server_close()
            raise
    thread = threading.Thread(target=httpd.serve_forever, name="agent-exporter-metrics", daemon=True)
    thread.start()
    return httpd, thread
