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

from course import notebooks
from course.modules import Course

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
