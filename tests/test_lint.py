"""The package and the course tool are mypy --strict and ruff clean."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False)


def test_mypy_strict() -> None:
    result = run("mypy", "--strict", "tinytorch", "course")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "tinytorch", "course", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
