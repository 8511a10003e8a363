"""Reading nbgrader notebooks: solution regions, hidden tests, graded cells, filled-in copies."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
# The first line of a test cell that tests what the notebook itself built (a trained model, not the package):
# ``course check`` runs tests against the learner's package alone, so it names such a cell instead of running it.
NOTEBOOK_ONLY = "# Checked in the notebook only"


def read(path: Path) -> Any:
    """A notebook as an nbformat v4 node."""
    return nbformat.read(path, as_version=4)


def grader_meta(cell: Any) -> dict[str, Any]:
    meta: dict[str, Any] = cell.get("metadata", {}).get("nbgrader", {})
    return meta


def is_solution(cell: Any) -> bool:
    return bool(grader_meta(cell).get("solution"))


def is_test(cell: Any) -> bool:
    return bool(grader_meta(cell).get("grade")) and cell.cell_type == "code"


def is_notebook_only(cell: Any) -> bool:
    """A test cell that needs the notebook's own run (``NOTEBOOK_ONLY`` on its first line)."""
    return is_test(cell) and str(cell.source).lstrip().startswith(NOTEBOOK_ONLY)


def grade_id(cell: Any) -> str:
    return str(grader_meta(cell).get("grade_id", ""))


def regions(source: str, begin: str, end: str) -> Iterator[list[str]]:
    """The lines strictly between each ``begin`` and ``end`` marker of a cell."""
    inside: list[str] | None = None
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == begin:
            inside = []
        elif stripped == end and inside is not None:
            yield inside
            inside = None
        elif inside is not None:
            inside.append(line)


def without_markers(source: str, begin: str = BEGIN_SOLUTION, end: str = END_SOLUTION) -> str:
    """A cell's source with the marker lines removed: what a student who solved it would have."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in (begin, end))


def without_regions(source: str, begin: str, end: str) -> str:
    """A cell's source with every region between ``begin`` and ``end`` removed, markers included."""
    kept: list[str] = []
    inside = False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def without_hidden_tests(source: str) -> str:
    """A test cell's source with every hidden-test region removed (what the student sees)."""
    return without_regions(source, BEGIN_HIDDEN, END_HIDDEN)


SECRET_REGIONS = ((BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN))


def filled_in(release: Any, source: Any, answers: Mapping[str, str] | None = None) -> Any:
    """A copy of ``release`` whose solution cells hold the source solutions, or ``answers[grade_id]``.

    This is what a student who answered every cell would submit; ``answers`` lets a demo or a
    test play a student with a different (say, subtly wrong) answer to one cell.
    """
    solutions = {grade_id(cell): without_markers(cell.source) for cell in source.cells if is_solution(cell)}
    answers = answers or {}
    result = copy.deepcopy(release)
    for cell in result.cells:
        key = grade_id(cell)
        if is_solution(cell) and key in solutions:
            cell.source = answers.get(key, solutions[key])
    return result
