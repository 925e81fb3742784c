"""The `agent-exporter` command: its version, read from the one place the package keeps it."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import exporter
from exporter import cli

ROOT = Path(__file__).resolve().parents[1]


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent-exporter --version` prints `agent-exporter <version>` and exits 0."""
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"agent-exporter {exporter.__version__}\n"


def test_version_flag_works_as_a_command() -> None:
    """The module run as a program answers --version too (what the console script calls)."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stdout) == (0, f"agent-exporter {exporter.__version__}\n")


def test_version_has_a_single_source() -> None:
    """pyproject.toml declares no version of its own; the installed metadata is exporter.__version__."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("agent-exporter") == exporter.__version__


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["demo", "--port", "{busy}", "--duration", "1"], "--port"),
        (["ingest", "--port", "{busy}", "--metrics-port", "0"], "--port"),
        (["ingest", "--port", "0", "--metrics-port", "{busy}"], "--metrics-port"),
        (["ingest", "--port", "0", "--metrics-port", "0", "--grpc-port", "{busy}"], "--grpc-port"),
    ],
)
def test_a_port_in_use_is_named_with_the_option_that_changes_it(argv: list[str], option: str) -> None:
    """A busy port makes each command name the address and port and its own option, not configure()'s keyword."""
    if option == "--grpc-port":
        pytest.importorskip("grpc")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [a.replace("{busy}", str(port)) for a in argv]
        proc = subprocess.run(
            [sys.executable, "-m", "exporter.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode in (1, 2), said
    assert f"127.0.0.1:{port}" in said and f"pass another {option}" in said, said
    assert "metrics_port" not in said and "Traceback" not in said, said
