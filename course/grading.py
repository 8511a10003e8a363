"""Instructor commands: release, autograde, feedback and report, composed from nbgrader.

nbgrader does the work; this module runs it from the course root (where it reads
``nbgrader_config.py``) and reads what it leaves: the gradebook, exported as rows and CSV. The
grading itself (batches of checked submissions, sandboxed) is ``course.autograde``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from course.modules import Course, CourseError, discover, resolve

LOG_TAIL = 5


def nbgrader(course: Course, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``nbgrader ARGS`` from the course root, where it finds its configuration."""
    command = [sys.executable, "-m", "nbgrader", *args]
    if course.db_url:
        command.append(f"--CourseDirectory.db_url={course.db_url}")
    return subprocess.run(
        command, cwd=course.root, env={**tool_env(), **(env or {})}, capture_output=True, text=True, check=False
    )


def tool_env() -> dict[str, str]:
    """The environment with this Python's scripts first on PATH: nbgrader runs ``alembic`` by name."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


# The one message of nbgrader's log the course reads (nbgrader 0.9.6 with SQLAlchemy on SQLite): a writer that
# found the gradebook locked by another process logs sqlite3's OperationalError. Everything else about a
# submission comes from the gradebook and the graded notebook, never from this log.
GRADEBOOK_LOCKED = "database is locked"


def gradebook_was_locked(log: str) -> bool:
    """True when an nbgrader run's log says it gave up on a locked SQLite gradebook (then that run is retried)."""
    return GRADEBOOK_LOCKED in log


def log_tail(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    return " | ".join((errors or lines)[-LOG_TAIL:])


def release(course: Course, keys: list[str] | None = None) -> list[str]:
    """Generate ``release/`` (and the gradebook's record of each assignment) from ``source/``."""
    modules = [resolve(course, key) for key in keys] if keys else discover(course)
    for module in modules:
        result = nbgrader(course, "generate_assignment", module.name, "--force")
        if result.returncode != 0:
            raise CourseError(f"nbgrader could not release {module.name}: {log_tail(result)}")
    return [module.name for module in modules]


def feedback(course: Course, key: str, student: str | None = None, *, force: bool = False) -> Path:
    """Write feedback HTML (hidden tests scrubbed, see ``course.feedback``) for graded submissions."""
    module = resolve(course, key)
    linked = [
        path.relative_to(course.root)
        for folder in sorted(course.autograded.glob(f"{student or '*'}/{module.name}"))
        for path in [folder, *folder.rglob("*")]
        if path.is_symlink() or not (path.is_dir() or path.is_file())
    ]
    if linked:  # left by an older grader: nbgrader would copy what they point to into the feedback
        raise CourseError(
            f"Refusing to write feedback: {', '.join(map(str, linked[:3]))} in autograded/ are links or special "
            "files. Grade those submissions again with `course autograde --force`, which copies only the notebook."
        )
    args = ["generate_feedback", module.name] + (["--student", student] if student else [])
    result = nbgrader(course, *args, *(["--force"] if force else []))
    if result.returncode != 0:
        raise CourseError(f"nbgrader could not generate feedback for {module.name}: {log_tail(result)}")
    return course.feedback


@dataclass(frozen=True)
class GradeRow:
    student: str
    assignment: str
    score: float
    max_score: float

    @property
    def percent(self) -> float:
        return 100 * self.score / self.max_score if self.max_score else 0.0


def grades(course: Course) -> list[GradeRow]:
    """Every submission's score, read from the gradebook in one query (a class of 3,000 takes a second)."""
    from nbgrader import api

    with api.Gradebook(course.gradebook_url) as gradebook:
        found = (
            gradebook.db.query(
                api.SubmittedAssignment.student_id,
                api.Assignment.name,
                api.SubmittedAssignment.score,
                api.SubmittedAssignment.max_score,
            )
            .join(api.Assignment, api.SubmittedAssignment.assignment_id == api.Assignment.id)
            .all()
        )
    rows = [GradeRow(student, name, float(score or 0), float(most or 0)) for student, name, score, most in found]
    return sorted(rows, key=lambda row: (row.student, row.assignment))


@dataclass(frozen=True)
class CellResult:
    """One auto-graded test cell of one submission."""

    student: str
    assignment: str
    cell: str
    score: float
    max_score: float


def cell_results(course: Course) -> list[CellResult]:
    """Every test cell's score in every submission, read from the gradebook in one query."""
    from nbgrader import api

    with api.Gradebook(course.gradebook_url) as gradebook:
        found = (
            gradebook.db.query(
                api.SubmittedAssignment.student_id,
                api.Assignment.name,
                api.GradeCell.name,
                api.Grade.score,
                api.GradeCell.max_score,
            )
            .join(api.GradeCell, api.Grade.cell_id == api.GradeCell.id)
            .join(api.SubmittedNotebook, api.Grade.notebook_id == api.SubmittedNotebook.id)
            .join(api.SubmittedAssignment, api.SubmittedNotebook.assignment_id == api.SubmittedAssignment.id)
            .join(api.Assignment, api.SubmittedAssignment.assignment_id == api.Assignment.id)
            .order_by(api.SubmittedAssignment.student_id, api.Assignment.name, api.GradeCell.name)
            .all()
        )
    return [
        CellResult(student, assignment, cell, float(score or 0), float(most or 0))
        for student, assignment, cell, score, most in found
    ]


def export_csv(course: Course, path: Path) -> Path:
    """nbgrader's own CSV export of the gradebook."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result = nbgrader(course, "export", "--to", str(path))
    if result.returncode != 0 or not path.is_file():
        raise CourseError(f"nbgrader could not export grades: {log_tail(result)}")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
