"""The /metrics endpoint (issue 7, point 5): bind address, TLS, mutual TLS, bad and busy ports.

Certificates are made in the test with trustme; the client is urllib with a real ssl context.
"""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trustme

import exporter
from exporter import testing
from tests.servers import free_port


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.status, response.read().decode()


def serve(**kwargs: object) -> int:
    """Configure with a metrics server on a free port and record one execution; the port."""
    port = free_port()
    exporter.configure("endpoint", metrics_port=port, registry=testing.fresh_registry(), tracing=False, **kwargs)
    with exporter.execution("invoice", trigger="email"):
        pass
    return port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_cert(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def test_bind_address_is_honoured() -> None:
    """Bound to 127.0.0.2, the endpoint answers there and nowhere else."""
    port = serve(metrics_addr="127.0.0.2")
    status, body = get(f"http://127.0.0.2:{port}/metrics")
    assert status == 200 and 'agent_executions_started_total{agent="invoice",trigger="email"} 1.0' in body
    with pytest.raises(urllib.error.URLError):
        get(f"http://127.0.0.1:{port}/metrics")


def test_tls(ca: trustme.CA, server_cert: tuple[str, str]) -> None:
    """With a certificate and key, /metrics is HTTPS only and verifies against the CA."""
    certfile, keyfile = server_cert
    port = serve(metrics_addr="127.0.0.1", metrics_certfile=certfile, metrics_keyfile=keyfile)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    status, body = get(f"https://127.0.0.1:{port}/metrics", client)
    assert status == 200 and "agent_executions_started_total" in body
    with pytest.raises(urllib.error.URLError):  # a client that does not trust the CA
        get(f"https://127.0.0.1:{port}/metrics", ssl.create_default_context())
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):  # plain HTTP
        get(f"http://127.0.0.1:{port}/metrics")


def test_mutual_tls(ca: trustme.CA, server_cert: tuple[str, str], tmp_path: Path) -> None:
    """With a client CA and client auth required, only a client with a certificate gets in."""
    certfile, keyfile = server_cert
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    port = serve(
        metrics_addr="127.0.0.1",
        metrics_certfile=certfile,
        metrics_keyfile=keyfile,
        metrics_client_cafile=str(cafile),
        metrics_client_auth_required=True,
    )
    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    ca.issue_cert("prometheus@example.test").configure_cert(with_cert)
    status, body = get(f"https://127.0.0.1:{port}/metrics", with_cert)
    assert status == 200 and "agent_executions_started_total" in body

    without_cert = ssl.create_default_context()
    ca.configure_trust(without_cert)
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        get(f"https://127.0.0.1:{port}/metrics", without_cert)

    other_ca = trustme.CA()
    foreign = ssl.create_default_context()
    ca.configure_trust(foreign)
    other_ca.issue_cert("intruder@example.test").configure_cert(foreign)
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        get(f"https://127.0.0.1:{port}/metrics", foreign)


@pytest.mark.parametrize("port", [-1, 65536, 70000, "9464", 9464.0, True])
def test_bad_port_is_a_value_error(port: object) -> None:
    """A port outside 0..65535 (or not an int) is refused at configure()."""
    with pytest.raises(ValueError, match="metrics_port"):
        exporter.configure("endpoint", metrics_port=port, registry=testing.fresh_registry(), tracing=False)  # type: ignore[arg-type]
    assert exporter.registry() is None


def test_port_in_use_is_a_clear_value_error() -> None:
    """A busy port: ValueError naming the address and the way out; nothing half-configured."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=rf"127\.0\.0\.1:{port}.*in use"):
            exporter.configure(
                "endpoint",
                metrics_port=port,
                metrics_addr="127.0.0.1",
                registry=testing.fresh_registry(),
                tracing=False,
            )
    assert exporter.registry() is None
    serve(metrics_addr="127.0.0.1")  # and configuring again on a free port works


def test_tls_half_configured_is_a_value_error(server_cert: tuple[str, str]) -> None:
    """A certificate without its key (or the other way round) is refused at configure()."""
    certfile, _ = server_cert
    with pytest.raises(ValueError, match="metrics_certfile"):
        exporter.configure("endpoint", metrics_port=free_port(), metrics_certfile=certfile, tracing=False)


def test_missing_certificate_file_is_a_clear_value_error(tmp_path: Path) -> None:
    """A certificate path that does not exist is refused at configure(), naming the file."""
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="nope.pem"):
        exporter.configure(
            "endpoint",
            metrics_port=free_port(),
            metrics_addr="127.0.0.1",
            metrics_certfile=missing,
            metrics_keyfile=missing,
            registry=testing.fresh_registry(),
            tracing=False,
        )
    assert exporter.registry() is None


def test_client_auth_without_tls_is_a_value_error(tmp_path: Path, ca: trustme.CA) -> None:
    """Asking for client certificates without a server certificate is refused, not served as plain HTTP."""
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    for kwargs in ({"metrics_client_auth_required": True}, {"metrics_client_cafile": str(cafile)}):
        with pytest.raises(ValueError, match="need TLS"):
            exporter.configure("endpoint", metrics_port=free_port(), tracing=False, **kwargs)  # type: ignore[arg-type]
        assert exporter.registry() is None
