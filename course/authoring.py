"""Turn a percent-format draft into a clean nbgrader source notebook.

Authors may draft a module as a plain ``.py`` file (easier to diff and review) and
convert it with ``course author DRAFT.py source/NN_name/NN_name.ipynb``. Only the
``.ipynb`` is kept in ``source/``: nbgrader would copy any other file into the release.

Cell headers::

    # %% [markdown]                      a locked markdown cell
    # %%                                 a locked code cell (setup, systems view)
    # %% solution id=tensor-class        a solution cell the student fills in
    # %% tests id=tensor-tests points=10 an autograded, locked test cell

Markdown lines are written as comments (``# text``); the leading ``# `` is removed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import nbformat

HEADER = re.compile(r"^# %%(?P<rest>.*)$")


class DraftError(ValueError):
    """A draft cell header that cannot be turned into nbgrader metadata."""


def _parse_header(rest: str, line_no: int) -> dict[str, Any]:
    """Read the words after ``# %%`` into a small description of the cell."""
    words = shlex.split(rest)
    cell: dict[str, Any] = {"markdown": False, "solution": False, "tests": False}
    for word in words:
        if word == "[markdown]":
            cell["markdown"] = True
        elif word in ("solution", "tests"):
            cell[word] = True
        elif word.startswith("id="):
            cell["id"] = word[3:]
        elif word.startswith("points="):
            cell["points"] = int(word[7:])
        else:
            raise DraftError(f"line {line_no}: unknown word {word!r} in cell header")
    if (cell["solution"] or cell["tests"]) and "id" not in cell:
        raise DraftError(f"line {line_no}: solution and test cells need a stable id=...")
    if cell["tests"] and "points" not in cell:
        raise DraftError(f"line {line_no}: a test cell needs points=N")
    return cell


def _split_cells(text: str) -> list[tuple[dict[str, Any], list[str]]]:
    cells: list[tuple[dict[str, Any], list[str]]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        match = HEADER.match(line)
        if match:
            cells.append((_parse_header(match["rest"], line_no), []))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip():
            raise DraftError(f"line {line_no}: text before the first '# %%' header")
    return cells


def _markdown_source(lines: list[str]) -> str:
    body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
    return "\n".join(body).strip("\n")


def _nbgrader_metadata(cell: dict[str, Any], grade_id: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "grade": bool(cell["tests"]),
        "grade_id": grade_id,
        "locked": not cell["solution"],
        "schema_version": 3,
        "solution": bool(cell["solution"]),
        "task": False,
    }
    if cell["tests"]:
        meta["points"] = cell["points"]
    return meta


def draft_to_notebook(text: str, stem: str) -> nbformat.NotebookNode:
    """Build the notebook for a draft; ``stem`` (``01_tensor``) prefixes generated ids."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "python3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    seen: set[str] = set()
    for index, (cell, lines) in enumerate(_split_cells(text)):
        kind = "md" if cell["markdown"] else "code"
        grade_id = cell.get("id", f"{stem}-{kind}-{index:02d}")
        if grade_id in seen:
            raise DraftError(f"duplicate cell id {grade_id!r}")
        seen.add(grade_id)
        if cell["markdown"]:
            new = nbformat.v4.new_markdown_cell(_markdown_source(lines))
        else:
            new = nbformat.v4.new_code_cell("\n".join(lines).strip("\n"))
        new.id = grade_id
        new.metadata = {"nbgrader": _nbgrader_metadata(cell, grade_id)}
        nb.cells.append(new)
    return nb  # type: ignore[no-any-return]


def convert_draft(draft: Path, notebook: Path) -> None:
    """Write ``notebook`` from ``draft``; the notebook's folder name gives the id prefix."""
    nb = draft_to_notebook(draft.read_text(encoding="utf-8"), notebook.stem)
    notebook.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, notebook)
