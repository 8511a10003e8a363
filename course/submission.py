"""Submissions are data: checked as files and as notebooks before grading, and staged as a clean copy.

``submitted/<student>/<NN_name>/`` must be real folders holding the notebook as a regular file (no
symbolic link, device or pipe anywhere in the folder), under a size limit. The notebook must be
valid nbformat 4 with nbgrader's cell metadata (its schema version), unique cell ids, unique
grade_ids, every locked and test cell of the release present and no graded cell the release does
not have. nbgrader then grades a *staged copy*: the parsed notebook written again (and a small
``timestamp.txt``), nothing else, so nothing else a submission holds can reach ``autograded/`` or
the student's feedback.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from course import notebooks
from course.modules import Course, Module

MAX_NOTEBOOK_BYTES = 16 * 1024**2
MAX_TIMESTAMP_BYTES = 256
TIMESTAMP = "timestamp.txt"


@dataclass
class Checked:
    """A submission as read: the notebook (None when it cannot be graded), its timestamp and the problems."""

    notebook: Any
    timestamp: str | None
    problems: list[str]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                       (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):  # fmt: skip
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, never following a link, never more than ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{path.name} is {info.st_size:,} bytes, over the limit of {limit:,}")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{path.name} is over the limit of {limit:,} bytes")
        return data
    finally:
        os.close(fd)


def _folder_problems(course: Course, module: Module, student: str) -> list[str]:
    for folder in (course.submitted / student, course.submission_folder(student, module.name)):
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            return [f"no folder {folder.relative_to(course.root)}"]
        if not stat.S_ISDIR(mode):
            return [f"{folder.relative_to(course.root)} is {_kind(mode)}: only real folders are graded"]
    problems = []
    for entry in sorted(os.scandir(course.submission_folder(student, module.name)), key=lambda e: e.name):
        mode = entry.stat(follow_symlinks=False).st_mode
        if not stat.S_ISREG(mode):
            problems.append(f"the submission holds {_kind(mode)} ({entry.name}): only regular files are accepted")
    return problems


def notebook_problems(nb: Any, raw: dict[str, Any], release: Any) -> list[str]:
    problems: list[str] = []
    ids = [cell.get("id") for cell in raw.get("cells", []) if isinstance(cell, dict) and cell.get("id") is not None]
    duplicated = sorted({str(i) for i in ids if ids.count(i) > 1})
    if duplicated:
        problems.append(f"duplicated cell ids: {', '.join(duplicated[:5])}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(nbformat.from_dict(copy.deepcopy(raw)))  # a copy: it repairs what it finds
    except nbformat.ValidationError as error:
        problems.append(f"not a valid notebook: {str(error.message)[:200]}")
    from nbgrader.nbgraderformat import MetadataValidator, ValidationError

    try:
        MetadataValidator().validate_nb(nb)
    except ValidationError as error:
        problems.append(f"nbgrader metadata: {str(error)[:200]}")
    graded = [notebooks.grade_id(c) for c in nb.cells if notebooks.grader_meta(c) and notebooks.grade_id(c)]
    twice = sorted({g for g in graded if graded.count(g) > 1})
    if twice:
        problems.append(f"duplicated grade_ids: {', '.join(twice[:5])}")
    expected = {notebooks.grade_id(c) for c in release.cells if notebooks.grade_id(c)}
    locked = {
        notebooks.grade_id(c)
        for c in release.cells
        if notebooks.grade_id(c) and (notebooks.grader_meta(c).get("locked") or notebooks.is_test(c))
    }
    tests = {notebooks.grade_id(c) for c in release.cells if notebooks.is_test(c)}
    missing_tests = tests - set(graded)
    if missing_tests:
        problems.append(f"test cells deleted: {', '.join(sorted(missing_tests))}")
    missing_locked = locked - tests - set(graded)
    if missing_locked:
        problems.append(f"locked cells deleted: {', '.join(sorted(missing_locked))}")
    flags = ("grade", "solution", "locked", "task", "points")
    given = {notebooks.grade_id(c): c for c in release.cells if notebooks.grade_id(c)}
    changed = sorted(
        notebooks.grade_id(c)
        for c in nb.cells
        if notebooks.grade_id(c) in given
        and (
            c.cell_type != given[notebooks.grade_id(c)].cell_type
            or any(
                notebooks.grader_meta(c).get(flag) != notebooks.grader_meta(given[notebooks.grade_id(c)]).get(flag)
                for flag in flags
            )
        )
    )
    if changed:
        problems.append(f"nbgrader metadata changed on cells: {', '.join(changed[:5])}")
    unknown = sorted(set(graded) - expected)
    if unknown:
        problems.append(f"graded cells the release does not have: {', '.join(unknown[:5])}")
    return problems


def check(course: Course, module: Module, student: str, release: Any) -> Checked:
    """Read and check one submission; ``notebook`` is None when it must not be graded."""
    name = f"{module.name}.ipynb"
    problems = _folder_problems(course, module, student)
    folder = course.submission_folder(student, module.name)
    if problems and not (folder.is_dir() and not folder.is_symlink()):
        return Checked(None, None, problems)
    try:
        data = _read_regular(folder / name, MAX_NOTEBOOK_BYTES)
    except FileNotFoundError:
        return Checked(None, None, [*problems, f"no {name} in the submission"])
    except (OSError, ValueError) as error:
        return Checked(None, None, [*problems, f"{name} refused: {error}"])
    try:
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict) or raw.get("nbformat") != 4:
            raise ValueError("not an nbformat 4 notebook")
        with warnings.catch_warnings():  # duplicated ids are reported below, not repaired
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(raw), as_version=4)
    except (ValueError, RecursionError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        return Checked(None, None, [*problems, f"{name} is not a readable notebook ({str(error)[:120]})"])
    problems += notebook_problems(nb, raw, release)
    timestamp = None
    try:
        timestamp = _read_regular(folder / TIMESTAMP, MAX_TIMESTAMP_BYTES).decode("utf-8").strip()
    except FileNotFoundError:
        pass
    except (OSError, ValueError, UnicodeDecodeError) as error:
        problems.append(f"{TIMESTAMP} refused: {error}")
    return Checked(None if problems else nb, timestamp, problems)


def write(course: Course, student: str, module_name: str, notebook: Any) -> Path:
    """Hand in ``notebook`` as ``student``'s submission of ``module_name`` (what ``nbgrader collect`` leaves)."""
    path = course.submitted_notebook(student, module_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def stage(checked: Checked, target: Path, module: Module) -> None:
    """Write the checked notebook (and its timestamp) into ``target/<student>/<NN_name>``, nothing else."""
    target.mkdir(parents=True)
    nbformat.write(checked.notebook, target / f"{module.name}.ipynb")
    if checked.timestamp:
        (target / TIMESTAMP).write_text(checked.timestamp + "\n", encoding="utf-8")
