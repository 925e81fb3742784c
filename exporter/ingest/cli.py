"""`agent-exporter ingest`: the command-line front of `IngestService`."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading

from .service import DEFAULT_METRICS_PORT, DEFAULT_PORT, IngestService, IngestSettings

TOKEN_ENV = "AGENT_EXPORTER_INGEST_TOKEN"
FORWARD_TOKEN_ENV = "AGENT_EXPORTER_FORWARD_TOKEN"
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"OTLP/HTTP port (default {DEFAULT_PORT})")
    p.add_argument("--grpc-port", type=int, default=None,
                   help="also receive OTLP/gRPC here (4317 by convention; needs grpcio: the grpc extra)")  # fmt: skip
    p.add_argument("--addr", default="127.0.0.1", help="bind address for OTLP (default 127.0.0.1; 0.0.0.0 in Docker)")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help=f"port for /metrics (default {DEFAULT_METRICS_PORT})")  # fmt: skip
    p.add_argument("--metrics-addr", default="127.0.0.1", help="bind address for /metrics (default 127.0.0.1)")
    p.add_argument("--forward", default=None, metavar="URL",
        help="the next hop's OTLP/HTTP traces URL, e.g. http://jaeger:4318/v1/traces (default none; "
             "never this service's own address)")  # fmt: skip
    p.add_argument("--token-file", default=None,
                   help=f"file holding the bearer token senders must present (or ${TOKEN_ENV})")  # fmt: skip
    p.add_argument("--forward-token-file", default=None,
                   help=f"file holding a bearer token for the next hop (or ${FORWARD_TOKEN_ENV})")  # fmt: skip
    for prefix in ("", "metrics-"):
        what = "/metrics" if prefix else "OTLP"
        p.add_argument(f"--{prefix}certfile", default=None, help=f"TLS certificate for {what}")
        p.add_argument(f"--{prefix}keyfile", default=None, help=f"TLS key for {what}")
        p.add_argument(f"--{prefix}client-cafile", default=None, help=f"CA for client certificates on {what}")
        p.add_argument(f"--{prefix}client-auth-required", action="store_true",
                       help=f"require a client certificate on {what}")  # fmt: skip
    d = IngestSettings()
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="413 above (default %(default)s)")
    p.add_argument("--max-concurrent", type=int, default=d.max_concurrent,
                   help="requests decoded at once; more get 429 (default %(default)s)")  # fmt: skip
    p.add_argument("--max-pending-bytes", type=int, default=d.max_pending_bytes,
                   help="request bodies held at once; more get 503 (default %(default)s)")  # fmt: skip
    p.add_argument("--request-timeout", type=float, default=d.request_timeout,
                   help="seconds for a whole request, headers and body; 408 past it (default %(default)s)")  # fmt: skip
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open OTLP/HTTP connections; more get 503 (default %(default)s)")  # fmt: skip
    p.add_argument("--max-queue-bytes", type=int, default=d.max_queue_bytes,
                   help="forward queue; full gets 503 (default %(default)s)")  # fmt: skip
    p.add_argument("--grace", type=float, default=d.grace,
                   help="seconds a trace is held after its root arrives (default %(default)s)")  # fmt: skip
    p.add_argument("--trace-timeout", type=float, default=d.trace_timeout,
                   help="seconds a trace without a root is held (default %(default)s)")  # fmt: skip
    p.add_argument("--max-traces", type=int, default=d.max_traces, help="open traces held (default %(default)s)")
    p.add_argument("--max-spans", type=int, default=d.max_spans, help="spans held in all (default %(default)s)")
    p.add_argument("--max-spans-per-trace", type=int, default=d.max_spans_per_trace,
                   help="spans held per trace (default %(default)s)")  # fmt: skip
    p.add_argument("--task-store", default=None, metavar="URL",
                   help="record every derived execution in a task store (sqlite:///path or postgresql://...)")
    p.add_argument("--log-level", choices=sorted(LOG_LEVELS), default="warning", help="default %(default)s")


def _secret(path: str | None, env: str) -> str | None:
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return os.environ.get(env) or None


def settings_from(args: argparse.Namespace) -> IngestSettings:
    """IngestSettings from parsed arguments (ValueError / OSError on bad values or files)."""
    forward_token = _secret(args.forward_token_file, FORWARD_TOKEN_ENV)
    return IngestSettings(
        port=args.port,
        addr=args.addr,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        metrics_addr=args.metrics_addr,
        forward=args.forward,
        forward_headers=(("Authorization", f"Bearer {forward_token}"),) if forward_token else (),
        token=_secret(args.token_file, TOKEN_ENV),
        certfile=args.certfile,
        keyfile=args.keyfile,
        client_cafile=args.client_cafile,
        client_auth_required=args.client_auth_required,
        metrics_certfile=args.metrics_certfile,
        metrics_keyfile=args.metrics_keyfile,
        metrics_client_cafile=args.metrics_client_cafile,
        metrics_client_auth_required=args.metrics_client_auth_required,
        max_body_bytes=args.max_body_bytes,
        max_concurrent=args.max_concurrent,
        max_pending_bytes=args.max_pending_bytes,
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
        max_queue_bytes=args.max_queue_bytes,
        grace=args.grace,
        trace_timeout=args.trace_timeout,
        task_store=args.task_store,
        max_traces=args.max_traces,
        max_spans=args.max_spans,
        max_spans_per_trace=args.max_spans_per_trace,
    )


def _cannot_listen(exc: OSError | RuntimeError, args: argparse.Namespace) -> str | None:
    """Which of this command's ports could not be bound, and the option that changes it (None: a
    RuntimeError that is not about a port). The service closed what it had bound before raising:
    the port that still cannot be bound is the one."""
    if isinstance(exc, OSError) and exc.errno not in (None, errno.EADDRINUSE, errno.EACCES):
        return str(exc)
    ports = [("--port", args.addr, args.port), ("--grpc-port", args.addr, args.grpc_port),
             ("--metrics-port", args.metrics_addr, args.metrics_port)]  # fmt: skip
    for option, addr, port in ports:
        if port and not _bindable(addr, port):
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "in use or not allowed"
            return f"cannot listen on {addr}:{port} ({option}): {why}; pass another {option}"
    return str(exc) if isinstance(exc, OSError) else None


def _bindable(addr: str, port: int) -> bool:
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            sock.bind(sockaddr)
        return True
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT / SIGTERM; then derive what is held and forward what is queued."""
    level = LOG_LEVELS[args.log_level]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        service = IngestService(settings_from(args), log_level=level).start()
    except (OSError, RuntimeError) as exc:  # grpcio raises RuntimeError for a port it cannot bind
        said = _cannot_listen(exc, args)
        if said is None:
            raise
        print(f"agent-exporter ingest: {said}", file=sys.stderr)
        return 2
    except (ValueError, ImportError) as exc:
        print(f"agent-exporter ingest: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"agent-exporter ingest: OTLP on {args.addr}:{service.port}/v1/traces"
        + (f" and gRPC on {args.addr}:{service.grpc_port}" if service.grpc_port else "")
        + f", /metrics on "
        f"{args.metrics_addr}:{service.metrics_port}, forwarding to {args.forward or 'nowhere'}",
        file=sys.stderr,
        flush=True,
    )
    stop.wait()
    service.stop()
    return 0
