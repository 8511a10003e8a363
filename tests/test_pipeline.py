"""The generated folders match source/: tinytorch/ (nbdev) and release/ (nbgrader); releases leak nothing."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, ROOT, region_lines

from course import notebooks
from course.grading import nbgrader
from course.modules import Course, Module, discover

MODULES = discover(REPO)
NAMES = [m.name for m in MODULES]


def test_course_has_the_first_modules() -> None:
    assert NAMES[:2] == ["01_tensor", "02_activations"]


def test_source_holds_only_notebooks_and_data() -> None:
    allowed = {".ipynb", ".npz", ".npy", ".csv", ".txt", ".json", ".gz"}
    strays = [p for p in (ROOT / "source").rglob("*") if p.is_file() and p.suffix not in allowed]
    assert not strays, f"nbgrader would copy these into the student release unstripped: {strays}"


def test_source_notebooks_are_stored_clean() -> None:
    for module in MODULES:
        nb = notebooks.read(module.source_notebook)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{module.name}: cell {notebooks.grade_id(cell)} has outputs; run nbdev-clean"
                )


def test_nbdev_clean_keeps_source_notebooks_as_they_are(tmp_path: Path) -> None:
    """The cleaner authors are told to run must be a no-op on a stored notebook, nbgrader metadata included.

    (`allowed_cell_metadata_keys = "nbgrader"`, a string, was once read letter by letter and wiped it.)
    """
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    copies = [shutil.copy2(m.source_notebook, tmp_path / m.source_notebook.name) for m in MODULES]
    cleaner = Path(sys.executable).with_name("nbdev-clean")
    for copy in copies:
        subprocess.run([str(cleaner), "--fname", str(copy)], cwd=tmp_path, check=True, capture_output=True)
    changed = [
        m.name
        for m, copy in zip(MODULES, copies, strict=True)
        if Path(copy).read_bytes() != m.source_notebook.read_bytes()
    ]
    assert not changed, (
        f"nbdev-clean changes these stored notebooks (store them clean, keep nbgrader metadata): {changed}"
    )


def test_reference_package_is_in_sync_with_source(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "source"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, tmp_path / name)
    (tmp_path / "tinytorch").mkdir()
    shutil.copy2(ROOT / "tinytorch" / "__init__.py", tmp_path / "tinytorch" / "__init__.py")
    exporter = Path(sys.executable).with_name("nbdev-export")
    subprocess.run([str(exporter)], cwd=tmp_path, check=True, capture_output=True)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in (tmp_path / "tinytorch").rglob("*.py")}
    committed = {p.relative_to(ROOT): p.read_text() for p in (ROOT / "tinytorch").rglob("*.py")}
    assert fresh.keys() == committed.keys(), "tinytorch/ files differ from an nbdev-export of source/"
    stale = [str(path) for path in fresh if fresh[path] != committed[path]]
    assert not stale, f"out of sync with source/ (run `make build` and commit): {stale}"


@pytest.mark.parametrize("name", NAMES)
def test_release_is_in_sync_with_source(name: str, tmp_path: Path) -> None:
    scratch = tmp_path / "course"
    scratch.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", scratch)
    shutil.copytree(ROOT / "source", scratch / "source")
    result = nbgrader(Course(scratch), "generate_assignment", name, "--force")
    assert result.returncode == 0, result.stderr
    fresh = json.loads((scratch / "release" / name / f"{name}.ipynb").read_text())
    committed = json.loads((ROOT / "release" / name / f"{name}.ipynb").read_text())
    assert fresh == committed, f"release/{name} is out of sync with source/ (run `make build` and commit)"


@pytest.mark.parametrize("module", MODULES, ids=NAMES)
def test_release_has_no_solution_and_no_hidden_test(module: Module) -> None:
    """Every line of every solution and hidden-test region is checked, not only the markers."""
    name = module.name
    release_text = "\n".join(c.source for c in notebooks.read(ROOT / "release" / name / f"{name}.ipynb").cells)
    for marker in (notebooks.BEGIN_SOLUTION, notebooks.END_SOLUTION, notebooks.BEGIN_HIDDEN, notebooks.END_HIDDEN):
        assert marker not in release_text
    lines = region_lines(notebooks.read(module.source_notebook))
    secret = (lines["solution"] | lines["hidden"]) - lines["public"]
    release_lines = {line.strip() for line in release_text.splitlines()}
    leaks = sorted(secret & release_lines)
    assert not leaks, f"{name}: the release shows solution or hidden-test lines: {leaks[:5]}"
    assert len(secret) > 20, "the check must have solution lines to look for"


@pytest.mark.parametrize("module", MODULES, ids=NAMES)
def test_every_graded_cell_has_points_and_a_unique_id(module: Module) -> None:
    nb = notebooks.read(module.source_notebook)
    ids = [notebooks.grade_id(c) for c in nb.cells]
    assert len(ids) == len(set(ids)), "grade_ids must be unique"
    points = [float(notebooks.grader_meta(c)["points"]) for c in nb.cells if notebooks.is_test(c)]
    assert points and all(p > 0 for p in points)
    assert 80 <= sum(points) <= 120, f"a module is worth about 100 points, this one {sum(points)}"
    for cell in nb.cells:
        if notebooks.is_test(cell):
            assert notebooks.BEGIN_HIDDEN in cell.source, f"{notebooks.grade_id(cell)} has no hidden tests"


MAX_POINTS_PER_CELL = 10


@pytest.mark.parametrize("module", MODULES, ids=NAMES)
def test_no_graded_cell_is_worth_more_than_ten_points(module: Module) -> None:
    """One edge case must not sink a whole exercise."""
    heavy = {
        notebooks.grade_id(c): notebooks.grader_meta(c)["points"]
        for c in notebooks.read(module.source_notebook).cells
        if notebooks.is_test(c) and float(notebooks.grader_meta(c)["points"]) > MAX_POINTS_PER_CELL
    }
    assert not heavy, f"{module.name}: split these cells (at most {MAX_POINTS_PER_CELL} points each): {heavy}"


def _silent_checks(source: str) -> list[int]:
    """Lines of hidden-test checks whose failure would not say what was checked."""
    hidden: set[int] = set()
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == notebooks.BEGIN_HIDDEN:
            inside = True
        elif line.strip() == notebooks.END_HIDDEN:
            inside = False
        elif inside:
            hidden.add(number)
    silent: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if getattr(node, "lineno", None) not in hidden:
            continue
        if isinstance(node, ast.Assert) and node.msg is None:
            silent.append(node.lineno)
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if (
                name.startswith("assert_")
                and name != "assert_raises"
                and not any(k.arg in ("err_msg", "msg") for k in node.keywords)
            ):
                silent.append(node.lineno)
    return sorted(silent)


@pytest.mark.parametrize("module", MODULES, ids=NAMES)
def test_every_hidden_check_says_what_it_checked(module: Module) -> None:
    """Feedback shows a failed hidden check's message, never its code: the message must say what was checked."""
    silent = {
        notebooks.grade_id(c): lines
        for c in notebooks.read(module.source_notebook).cells
        if notebooks.is_test(c) and (lines := _silent_checks(c.source))
    }
    assert not silent, f"{module.name}: hidden checks without a message (cell: lines): {silent}"
