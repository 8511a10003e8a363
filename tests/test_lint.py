"""The package, the course tool, the milestones and the notebooks are mypy --strict and ruff clean."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


MODELS = """
from tinytorch import nn
from tinytorch.core.activations import Tanh
from tinytorch.core.layers import Linear, Module, Sequential
from tinytorch.core.losses import CrossEntropyLoss

model = Sequential(Linear(4, 8), nn.ReLU(), Linear(8, 8), Tanh(), nn.GELU(approximate="tanh"), Linear(8, 3))
layers: list[Module] = [*model, nn.Softmax(dim=1), CrossEntropyLoss(), nn.MSELoss(reduction="sum")]
"""


def test_activations_and_losses_are_modules_to_mypy(tmp_path: Path) -> None:
    """``Sequential(Linear, ReLU, Linear)`` type-checks without ignores, through every import path; a function
    where a Module belongs is an error mypy reports."""
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(MODELS)
    bad.write_text("from tinytorch.nn import Linear, Sequential\nfrom tinytorch.nn.functional import relu\n"
                   "Sequential(Linear(2, 2), relu)\n")
    result = run("mypy", "--strict", "--no-incremental", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("mypy", "--strict", "--no-incremental", str(bad))
    assert result.returncode == 1 and '"Sequential" has incompatible type' in result.stdout, result.stdout


def test_ruff() -> None:
    result = run("ruff", "check", "tinytorch", "course", "tests", "milestones", "source")
    assert result.returncode == 0, result.stdout + result.stderr


def test_notebook_code_is_typed(tmp_path: Path) -> None:
    """Every function in a source notebook, test and measurement helpers included, passes mypy (via nbqa).

    nbqa writes a temporary ``.py`` file beside each notebook while it runs; on a copy of ``source/`` those
    files cannot reach ``test_ruff`` or any other test that reads the tree at the same time."""
    shutil.copytree(ROOT / "source", tmp_path / "source")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run([sys.executable, "-m", "nbqa", "mypy", "source"], cwd=tmp_path, capture_output=True,
                            text=True, check=False, env={**os.environ, "MYPYPATH": str(ROOT)})
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
