"""The package, the course tool, the milestones and the notebooks are mypy --strict and ruff clean."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from helpers import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False)


def test_mypy_strict() -> None:
    result = run("mypy", "--strict", "tinytorch", "course")
    assert result.returncode == 0, result.stdout + result.stderr


def test_milestones_are_mypy_strict() -> None:
    scripts = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "milestones").glob("*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MYPYPATH": str(ROOT / "milestones")},  # the scripts import milestone.py beside them
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "tinytorch", "course", "tests", "milestones", "source")
    assert result.returncode == 0, result.stdout + result.stderr


def test_notebook_code_is_typed() -> None:
    """Every function in a source notebook, test and measurement helpers included, passes mypy (via nbqa)."""
    result = run("nbqa", "mypy", "source")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_test_module_imports_another() -> None:
    """Tests share code through tests/helpers.py and fixtures, never by importing a test module or conftest.py."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "conftest" or n.startswith("test_")]
    assert not offenders, offenders
