"""Helpers the tests share: the repository, scratch copies of the course, a learner who fills in notebooks.

A plain module (not conftest.py, which pytest loads as a plugin and tests should not import).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from course import notebooks
from course.grading import nbgrader
from course.modules import Course
from tinytorch.core.dataloader import FASHION_MNIST_ROOT

ROOT = Path(__file__).resolve().parents[1]
REPO = Course(ROOT)


def region_lines(source: Any) -> dict[str, set[str]]:
    """Stripped lines of a source notebook: in solution regions, in hidden tests, and shown elsewhere."""
    lines: dict[str, set[str]] = {"solution": set(), "hidden": set(), "public": set()}
    for cell in source.cells:
        shown = cell.source
        for kind, (begin, end) in zip(("solution", "hidden"), notebooks.SECRET_REGIONS, strict=True):
            lines[kind] |= {line.strip() for region in notebooks.regions(cell.source, begin, end) for line in region}
            shown = notebooks.without_regions(shown, begin, end)
        lines["public"] |= {line.strip() for line in shown.splitlines()}
    return {kind: found - {""} for kind, found in lines.items()}


def copy_course(target: Path) -> Course:
    """A scratch course with the repository's config, sources and releases (no grades, no learner files)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "nbgrader_config.py", target / "nbgrader_config.py")
    shutil.copytree(ROOT / "source", target / "source")
    shutil.copytree(ROOT / "release", target / "release")
    return Course(target)


def fill_in(course: Course, name: str) -> None:
    """Play a learner who answers every cell of their working copy with the solutions."""
    copy = course.workspace / f"{name}.ipynb"
    solved = notebooks.filled_in(notebooks.read(copy), notebooks.read(REPO.source / name / f"{name}.ipynb"))
    nbformat.write(solved, copy)


def learner_course(target: Path) -> Course:
    """A scratch course a learner can also run the milestones in (scripts and datasets included)."""
    course = copy_course(target)
    shutil.copytree(ROOT / "milestones", course.root / "milestones", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "datasets", course.root / "datasets")
    return course


def run_course(course: Course, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``course`` command as a user runs it, from the course root."""
    return subprocess.run(
        [sys.executable, "-m", "course.cli", *args], cwd=course.root, capture_output=True, text=True, check=False
    )


def graded_class(
    course: Course, module: str, scores: dict[str, list[float]], manual: frozenset[str] = frozenset()
) -> None:
    """Write a graded class straight into the gradebook, as ``course autograde`` would leave it, without grading.

    ``scores[student]`` holds the share of each test cell's points (1.0: full marks) in release order; missing
    ones score 0.
    Each student also gets a placeholder graded notebook in ``autograded/``. Fast enough for a class of 3,000.
    nbgrader's default leaves every grade needing manual grading until ``needs_manual_grade`` is cleared:
    pass the students whose grades a person still has to look at in ``manual``.
    """
    from nbgrader import api
    from nbgrader.api import Gradebook

    created = nbgrader(course, "db", "upgrade")  # nbgrader makes the gradebook with alembic, found on tool_env's PATH
    assert created.returncode == 0, created.stderr
    tests = [cell for cell in notebooks.read(course.release_notebook(module)).cells if notebooks.is_test(cell)]
    with Gradebook(course.gradebook_url) as gradebook:
        gradebook.update_or_create_assignment(module)
        gradebook.update_or_create_notebook(module, module)
        for cell in tests:
            points = float(notebooks.grader_meta(cell)["points"])
            gradebook.update_or_create_grade_cell(
                notebooks.grade_id(cell), module, module, max_score=points, cell_type="code"
            )
        assignment = gradebook.find_assignment(module)
        notebook = gradebook.find_notebook(module, module)
        grade_cells = {cell.name: cell for cell in notebook.grade_cells}
        most = {name: float(cell.max_score) for name, cell in grade_cells.items()}
        for student, shares in scores.items():  # ORM rows added at once: nbgrader's add_submission takes 0.1 s each
            submitted = api.SubmittedAssignment(assignment=assignment, student=api.Student(id=student))
            graded_notebook = api.SubmittedNotebook(assignment=submitted, notebook=notebook)
            names = (notebooks.grade_id(cell) for cell in tests)
            by_cell = {name: share * most[name] for name, share in zip(names, shares, strict=False)}
            gradebook.db.add_all([submitted, graded_notebook])
            gradebook.db.add_all(
                api.Grade(
                    cell=cell,
                    notebook=graded_notebook,
                    auto_score=by_cell.get(name, 0.0),
                    needs_manual_grade=student in manual,
                )
                for name, cell in grade_cells.items()
            )
            graded = course.autograded_notebook(student, module)
            graded.parent.mkdir(parents=True, exist_ok=True)
            graded.touch()
        gradebook.db.commit()


# Data a milestone reads from outside the repository: the test skips it, saying why, when the data is missing.
EXTERNAL_DATA = {
    "1998_cnn": (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz",
                 "Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist)"),
    "2018_optimization": (Path(FASHION_MNIST_ROOT) / "train-images-idx3-ubyte.gz",
                          "Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist)"),
}


def skip_without_data(name: str) -> None:
    if name in EXTERNAL_DATA:
        path, reason = EXTERNAL_DATA[name]
        if not path.is_file():
            pytest.skip(f"{reason}: no {path}")
