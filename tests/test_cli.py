"""The `agent-exporter` command: its version, read from the one place the package keeps it."""

from __future__ import annotations

import importlib.metadata
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
